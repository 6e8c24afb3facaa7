"""SparseRoIHead's ablation variants: plain cascade (no feature reuse),
heads that encode the boxes, any number of stages."""
import copy
from unittest import TestCase

import torch

from support.helpers import (build_in_scope, data_samples, fpn_features,
                             our_config)

C = 32
SHAPES = [(64, 96), (80, 64)]


def _cfg(num_stages=2, **roi_kwargs):
    """A 32-channel Sparse R-CNN head config with ``num_stages`` stages."""
    cfg = copy.deepcopy(our_config().model)
    rpn = dict(cfg['rpn_head'], num_proposals=6, proposal_feature_channel=C)
    roi = cfg['roi_head']
    roi.update(num_stages=num_stages, stage_loss_weights=[1] * num_stages,
               proposal_feature_channel=C, **roi_kwargs)
    roi['bbox_roi_extractor']['out_channels'] = C
    head = roi['bbox_head']
    head.update(num_classes=3, in_channels=C, feedforward_channels=2 * C,
                num_heads=4)
    head['dynamic_conv_cfg'].update(in_channels=C, feat_channels=8,
                                    out_channels=C)
    roi['train_cfg'] = cfg['train_cfg']['rcnn']
    roi['test_cfg'] = dict(max_per_img=6)
    return rpn, roi


def _build(seed=0, head=None, **kwargs):
    torch.manual_seed(seed)
    rpn, roi = _cfg(**kwargs)
    if head:
        roi['bbox_head'].update(head)
    rpn = build_in_scope(rpn, 'mmdet_sparse')
    roi = build_in_scope(roi, 'mmdet_sparse')
    rpn.init_weights()
    roi.init_weights()
    return rpn, roi


def _predict(rpn, roi, x, samples):
    proposals = rpn.predict(x, samples)
    metas = [s.metainfo for s in samples]
    return roi.predict_bbox(x, metas, proposals, roi.test_cfg)


class TestSparseRoIHeadAblations(TestCase):

    def setUp(self):
        self.x = fpn_features(SHAPES, channels=C)
        self.samples = data_samples(SHAPES, [2, 3], num_classes=3)

    def test_feature_reuse_is_the_default_and_matters(self):
        rpn, roi = _build()
        self.assertTrue(roi.feature_reuse)
        plain_rpn, plain = _build(feature_reuse=False)
        self.assertFalse(plain.feature_reuse)
        # Same architecture and weights: the switch changes no parameter.
        plain.load_state_dict(roi.state_dict(), strict=True)
        plain_rpn.load_state_dict(rpn.state_dict(), strict=True)
        with torch.no_grad():
            ref = roi(self.x, rpn.predict(self.x, self.samples),
                      self.samples)
            out = plain(self.x, rpn.predict(self.x, self.samples),
                        self.samples)
            # Stage 0 is the same; later stages differ.
            self.assertTrue(torch.equal(ref[0][0], out[0][0]))
            self.assertFalse(torch.allclose(ref[1][0], out[1][0]))
            a = _predict(rpn, roi, self.x, self.samples)
            b = _predict(plain_rpn, plain, self.x, self.samples)
        self.assertFalse(torch.allclose(a[0].scores, b[0].scores))

    def test_plain_cascade_stage_gets_no_gradient_from_previous_stage(self):
        for reuse in (True, False):
            rpn, roi = _build(feature_reuse=reuse)
            _, proposals = rpn.loss_and_predict(self.x, self.samples)
            losses = roi.loss(self.x, proposals, self.samples)
            stage1 = sum(v for k, v in losses.items()
                         if k.startswith('s1.loss'))
            params = list(roi.bbox_head[0].parameters())
            grads = torch.autograd.grad(stage1, params, allow_unused=True,
                                        retain_graph=True)
            reached = any(g is not None and g.abs().sum() > 0 for g in grads)
            # Boxes are detached, so only the features carry a gradient
            # from stage 1 back into stage 0.
            self.assertEqual(reached, reuse)
            init = rpn.init_proposal_features.weight
            grad = torch.autograd.grad(stage1, init, allow_unused=True)[0]
            # Stage 1 reads the initial features only without reuse (with
            # reuse, it reaches them through stage 0).
            self.assertTrue(grad is not None and grad.abs().sum() > 0)

    def test_positional_encoding_gets_the_normalised_boxes(self):
        rpn, roi = _build(head=dict(pos_encoding=True))
        ref_rpn, ref = _build()
        ref.load_state_dict(roi.state_dict(), strict=True)
        seen = []
        head = roi.bbox_head[0]
        hook = head.register_forward_pre_hook(
            lambda m, args, kwargs: seen.append(
                args[2] if len(args) > 2 else kwargs.get('boxes')),
            with_kwargs=True)
        with torch.no_grad():
            results = _predict(rpn, roi, self.x, self.samples)
            ref_results = _predict(rpn, ref, self.x, self.samples)
        hook.remove()
        # Stage 0's boxes are the proposals: whole images, so (0, 0, 1, 1).
        torch.testing.assert_close(seen[0],
                                   torch.tensor([0., 0., 1., 1.]).expand(
                                       2, 6, 4))
        self.assertFalse(torch.allclose(results[0].scores,
                                        ref_results[0].scores))
        losses = roi.loss(self.x, rpn.loss_and_predict(
            self.x, self.samples)[1], self.samples)
        self.assertTrue(torch.isfinite(losses['s1.loss_cls']))
        with self.assertRaisesRegex(ValueError, 'whwh'):
            roi.run_bbox_head(0, torch.randn(12, C, 7, 7),
                              torch.zeros(2, 6, 4), torch.zeros(2, 6, C))

    def test_any_number_of_stages(self):
        for num in (1, 3):
            rpn, roi = _build(num_stages=num)
            self.assertEqual(len(roi.bbox_head), num)
            _, proposals = rpn.loss_and_predict(self.x, self.samples)
            losses = roi.loss(self.x, proposals, self.samples)
            self.assertEqual({k.split('.')[0] for k in losses},
                             {f's{i}' for i in range(num)})
            with torch.no_grad():
                results = _predict(rpn, roi, self.x, self.samples)
            self.assertEqual(results[0].bboxes.shape, (6, 4))
