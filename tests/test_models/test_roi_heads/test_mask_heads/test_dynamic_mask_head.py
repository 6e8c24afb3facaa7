"""DynamicMaskHead: MMDetection's layers and names, this package's
DynamicConv, the same outputs."""
from unittest import TestCase

import torch
from mmengine.registry import DefaultScope

from support.helpers import (build_in_scope, narrow_queryinst,
                             our_queryinst_config)
from mmdet.registry import MODELS as MMDET_MODELS
from mmdet_sparse.models import DynamicConv, DynamicMaskHead
from mmdet_sparse.registry import MODELS


def _cfg(channels=32, num_classes=5):
    roi = narrow_queryinst(our_queryinst_config().model, channels)['roi_head']
    return dict(roi['mask_head'], num_classes=num_classes)


class TestDynamicMaskHead(TestCase):

    def test_same_outputs_and_parameters_as_mmdetection(self):
        torch.manual_seed(0)
        ref = build_in_scope(_cfg(), 'mmdet', MMDET_MODELS)
        ours = build_in_scope(_cfg(), 'mmdet_sparse', MODELS)
        self.assertIsInstance(ours, DynamicMaskHead)
        self.assertIsInstance(ours.instance_interactive_conv, DynamicConv)
        ref.init_weights()
        ours.load_state_dict(ref.state_dict(), strict=True)
        self.assertEqual(sorted(ref.state_dict()), sorted(ours.state_dict()))
        roi_feats = torch.randn(6, 32, 14, 14)
        proposal_feats = torch.randn(6, 32)
        for train in (True, False):
            ref.train(train)
            ours.train(train)
            out_ref = ref(roi_feats, proposal_feats)
            out = ours(roi_feats, proposal_feats)
            self.assertEqual(out.shape, (6, 5, 28, 28))
            torch.testing.assert_close(out, out_ref, rtol=1e-5, atol=1e-5)
        ref.zero_grad()
        ours.zero_grad()
        ref.train()
        ours.train()
        ref(roi_feats, proposal_feats).square().sum().backward()
        ours(roi_feats, proposal_feats).square().sum().backward()
        for (name, p_ref), p in zip(ref.named_parameters(),
                                    ours.parameters()):
            torch.testing.assert_close(p.grad, p_ref.grad, rtol=1e-4,
                                       atol=1e-5, msg=name)

    def test_label_logits_are_the_label_channels(self):
        torch.manual_seed(1)
        head = build_in_scope(_cfg(), 'mmdet_sparse', MODELS)
        head.init_weights()
        torch.nn.init.normal_(head.conv_logits.bias)
        head.eval()
        roi_feats = torch.randn(4, 32, 14, 14)
        proposal_feats = torch.randn(4, 32)
        full = head(roi_feats, proposal_feats)
        feats = head.forward_features(roi_feats, proposal_feats)
        labels = torch.tensor([3, 0, 4, 4, 1])
        rows = torch.tensor([0, 0, 2, 3, 1])
        torch.testing.assert_close(
            head.label_logits(feats, labels, rows), full[rows, labels],
            rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(
            head.label_logits(feats, labels[:4]),
            full[torch.arange(4), labels[:4]], rtol=1e-5, atol=1e-5)

    def test_own_dynamic_conv_in_any_scope(self):
        """An unscoped DynamicConv is this package's even when the default
        scope is MMDetection's."""
        with DefaultScope.overwrite_default_scope('mmdet'):
            head = MODELS.build(
                dict(_cfg(), type='mmdet_sparse.DynamicMaskHead'))
        self.assertIsInstance(head, DynamicMaskHead)
        self.assertIsInstance(head.instance_interactive_conv, DynamicConv)
        cfg = _cfg()
        cfg['dynamic_conv_cfg']['type'] = 'mmdet.DynamicConv'
        head = build_in_scope(cfg, 'mmdet_sparse', MODELS)
        self.assertFalse(type(head.instance_interactive_conv).__module__
                         .startswith('mmdet_sparse'))
