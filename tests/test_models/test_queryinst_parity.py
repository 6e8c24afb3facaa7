"""Numerical parity with MMDetection 3.3's QueryInst.

As for Sparse R-CNN (test_parity.py): identical weights, features, ground
truth (boxes and masks); the losses per key (``s{i}.loss_mask`` included),
every parameter's gradient, the feature gradients and the predicted boxes,
scores and labels agree to a relative difference of 1e-5; the predicted
binary masks are identical except at pixels whose reference probability is
within 1e-5 of the threshold. The heads are 32 channels wide (the
architecture of the config otherwise unchanged) so that the tests are fast.
"""
import copy
import itertools
from unittest import mock

import torch

from support.helpers import (OneThreadTestCase, add_masks, build_in_scope,
                             data_samples, fpn_features, head_pair,
                             max_rel_diff, mmdet_queryinst_config,
                             our_queryinst_config)
from mmdet.models.roi_heads.mask_heads import fcn_mask_head
from mmdet.registry import MODELS as MMDET_MODELS
from mmdet.testing import demo_mm_inputs
from mmdet_sparse.registry import MODELS

TOL = 1e-5
CHANNELS = 32


def _record_paste():
    """Patch MMDetection's mask paste to record each call's probabilities
    (on the CPU it pastes one detection per call, in detection order)."""
    calls = []
    original = fcn_mask_head._do_paste_mask

    def paste(masks, boxes, img_h, img_w, skip_empty=True):
        out, region = original(masks, boxes, img_h, img_w, skip_empty)
        soft = masks.new_zeros((len(masks), img_h, img_w))
        soft[(slice(None), ) + region] = out
        calls.append(soft)
        return out, region

    return calls, mock.patch.object(fcn_mask_head, '_do_paste_mask', paste)


def _run_heads(rpn, roi, img_shapes, samples):
    """Loss + backward, then eval-mode predictions (and, for MMDetection,
    its pasted mask probabilities)."""
    feats = fpn_features(img_shapes, CHANNELS, requires_grad=True)
    _, proposals = rpn.loss_and_predict(feats, copy.deepcopy(samples))
    losses = roi.loss(feats, proposals, copy.deepcopy(samples))
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    grads = {
        name: p.grad
        for name, p in itertools.chain(
            rpn.named_parameters(prefix='rpn_head'),
            roi.named_parameters(prefix='roi_head'))
    }
    feat_grads = [f.grad for f in feats]
    rpn.eval()
    roi.eval()
    calls, patch = _record_paste()
    with torch.no_grad(), patch:
        feats = [f.detach() for f in feats]
        preds = roi.predict(feats, rpn.predict(feats, samples), samples,
                            rescale=True)
    soft, start = [], 0
    for pred in (preds if calls else []):
        soft.append(torch.cat(calls[start:start + len(pred)]))
        start += len(pred)
    return losses, grads, feat_grads, preds, soft


class TestQueryInstHeadParity(OneThreadTestCase):
    """EmbeddingRPNHead + SparseRoIHead (DIIHead, DynamicMaskHead) against
    MMDetection's QueryInst heads."""

    def _check(self, num_classes, num_proposals, img_shapes, num_gts):
        ref, ours = head_pair(num_classes, num_proposals, masks=True,
                              channels=CHANNELS)
        # Smaller box deltas keep the random heads' boxes inside the
        # images (MMDetection's CPU paste fails on a box that is not); a
        # mask bias puts some probabilities above 0.5.
        with torch.no_grad():
            for heads in (ref, ours):
                for head in heads[1].bbox_head:
                    head.fc_reg.weight.mul_(0.1)
                for head in heads[1].mask_head:
                    head.conv_logits.bias.fill_(0.2)
        samples = add_masks(data_samples(img_shapes, num_gts, num_classes))
        ref_losses, ref_grads, ref_fgrads, ref_preds, ref_soft = _run_heads(
            *ref, img_shapes, samples)
        our_losses, our_grads, our_fgrads, our_preds, _ = _run_heads(
            *ours, img_shapes, samples)

        self.assertEqual(sorted(ref_losses), sorted(our_losses))
        self.assertIn('s5.loss_mask', our_losses)
        for key, value in ref_losses.items():
            self.assertLessEqual(
                max_rel_diff(our_losses[key], value), TOL, msg=key)
        self.assertEqual(sorted(ref_grads), sorted(our_grads))
        for name, grad in ref_grads.items():
            self.assertIsNotNone(grad, msg=name)
            self.assertLessEqual(
                max_rel_diff(our_grads[name], grad), TOL, msg=name)
        for ours_g, ref_g in zip(our_fgrads, ref_fgrads):
            self.assertLessEqual(max_rel_diff(ours_g, ref_g), TOL)

        threshold = ours[1].test_cfg['mask_thr_binary']
        # Not a comparison of empty masks.
        self.assertGreater(sum(int(p.masks.sum()) for p in ref_preds), 0)
        for our_p, ref_p, soft in zip(our_preds, ref_preds, ref_soft):
            self.assertEqual(len(our_p), len(ref_p))
            o = torch.argsort(our_p.scores, descending=True, stable=True)
            r = torch.argsort(ref_p.scores, descending=True, stable=True)
            self.assertLessEqual(
                max_rel_diff(our_p.scores[o], ref_p.scores[r]), TOL)
            self.assertLessEqual(
                max_rel_diff(our_p.bboxes[o], ref_p.bboxes[r]), TOL)
            self.assertTrue(torch.equal(our_p.labels[o], ref_p.labels[r]))
            self.assertEqual(our_p.masks.shape, ref_p.masks.shape)
            self.assertEqual(our_p.masks.dtype, torch.bool)
            differ = our_p.masks[o] != ref_p.masks[r]
            near = (soft[r] - threshold).abs() <= TOL
            self.assertFalse(bool((differ & ~near).any()))
        return our_losses

    def test_80_classes_100_proposals(self):
        self._check(80, 100, [(96, 128), (80, 112)], [5, 3])

    def test_one_class(self):
        self._check(1, 100, [(96, 128), (80, 112)], [4, 2])

    def test_image_without_boxes(self):
        losses = self._check(80, 100, [(96, 128), (80, 112)], [3, 0])
        self.assertGreater(losses['s5.loss_mask'].item(), 0)

    def test_300_proposals(self):
        self._check(80, 300, [(128, 96)], [7])


class TestQueryInstDetectorParity(OneThreadTestCase):
    """Whole QueryInst R50-FPN detectors: MMDetection's config against ours,
    and MMDetection's config built in this package's scope."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        torch.manual_seed(0)
        ref_cfg = mmdet_queryinst_config().model
        our_cfg = our_queryinst_config().model
        for cfg in (ref_cfg, our_cfg):
            cfg.backbone.init_cfg = None  # no download of ImageNet weights
        # Parameters without storage: names and shapes at no cost.
        with torch.device('meta'):
            cls.ref = build_in_scope(ref_cfg, 'mmdet', MMDET_MODELS)
            cls.ours = build_in_scope(our_cfg, 'mmdet_sparse', MODELS)

    def test_checkpoint_loads_strict(self):
        ref_sd, our_sd = self.ref.state_dict(), self.ours.state_dict()
        self.assertEqual(sorted(ref_sd), sorted(our_sd))
        for key, value in ref_sd.items():
            self.assertEqual(value.shape, our_sd[key].shape, msg=key)
        self.assertTrue(
            any(k.startswith('roi_head.mask_head.5.convs.3.bn.')
                for k in our_sd))
        self.ours.load_state_dict(ref_sd, strict=True)
        num_params = sum(p.numel() for p in self.ours.parameters())
        self.assertEqual(num_params,
                         sum(p.numel() for p in self.ref.parameters()))

    def test_mmdet_config_in_our_scope(self):
        """MMDetection's queryinst_r50_fpn_1x_coco.py, built in scope
        mmdet_sparse, trains and predicts with this package's heads."""
        cfg = mmdet_queryinst_config().model
        cfg.backbone.init_cfg = None
        # Fewer proposals and detections keep it fast; all else as given.
        cfg.rpn_head.num_proposals = 10
        cfg.test_cfg.rcnn.max_per_img = 10
        model = build_in_scope(cfg, 'mmdet_sparse', MODELS)
        roi = model.roi_head
        heads = [model.rpn_head, roi, *roi.bbox_head, *roi.mask_head]
        heads += [h.instance_interactive_conv for h in heads[2:]]
        for module in heads:
            self.assertTrue(
                type(module).__module__.startswith('mmdet_sparse.'),
                msg=type(module).__module__)
        packed = demo_mm_inputs(
            batch_size=2, image_shapes=[(3, 64, 64), (3, 48, 64)],
            num_items=[3, 0], num_classes=80, with_mask=True)
        model.train()
        data = model.data_preprocessor(packed, True)
        losses = model(**data, mode='loss')
        for i in range(6):
            self.assertTrue(torch.isfinite(losses[f's{i}.loss_mask']))
        model.eval()
        with torch.no_grad():
            data = model.data_preprocessor(packed, False)
            preds = model(**data, mode='predict')
        for pred, (h, w) in zip(preds, [(64, 64), (48, 64)]):
            self.assertEqual(pred.pred_instances.masks.shape, (10, h, w))
