"""Numerical parity with MMDetection 3.3's Sparse R-CNN.

Both implementations get identical weights, features and ground truth; the
losses (per key), every parameter's gradient, the feature gradients and the
predictions must agree to a relative difference of 1e-5 (``max|a-b|/max|b|``
per tensor).
"""
import copy
import itertools
from unittest import TestCase

import torch

from support.helpers import (build_in_scope, data_samples, fpn_features,
                             head_pair, max_rel_diff, mmdet_config,
                             our_config)
from mmdet.registry import MODELS as MMDET_MODELS
from mmdet_sparse.registry import MODELS

TOL = 1e-5


def _run_heads(rpn, roi, img_shapes, samples):
    """Loss + backward, then predictions, of one (rpn_head, roi_head)."""
    feats = fpn_features(img_shapes, requires_grad=True)
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
    with torch.no_grad():
        feats = [f.detach() for f in feats]
        proposals = rpn.predict(feats, samples)
        preds = roi.predict(feats, proposals, samples, rescale=True)
    return losses, grads, feat_grads, preds


def _sorted(pred):
    order = torch.argsort(pred.scores, descending=True)
    return pred.scores[order], pred.bboxes[order], pred.labels[order]


class TestHeadParity(TestCase):
    """EmbeddingRPNHead + SparseRoIHead + DIIHead against MMDetection's."""

    def _check(self, num_classes, num_proposals, img_shapes, num_gts):
        ref, ours = head_pair(num_classes, num_proposals)
        samples = data_samples(img_shapes, num_gts, num_classes)
        ref_out = _run_heads(*ref, img_shapes, samples)
        our_out = _run_heads(*ours, img_shapes, samples)

        (ref_losses, ref_grads, ref_fgrads, ref_preds) = ref_out
        (our_losses, our_grads, our_fgrads, our_preds) = our_out
        self.assertEqual(sorted(ref_losses), sorted(our_losses))
        for key, value in ref_losses.items():
            self.assertLessEqual(
                max_rel_diff(our_losses[key], value), TOL, msg=key)
        self.assertEqual(sorted(ref_grads), sorted(our_grads))
        for name, grad in ref_grads.items():
            if grad is None:
                self.assertIsNone(our_grads[name], msg=name)
                continue
            self.assertLessEqual(
                max_rel_diff(our_grads[name], grad), TOL, msg=name)
        for ours_g, ref_g in zip(our_fgrads, ref_fgrads):
            self.assertLessEqual(max_rel_diff(ours_g, ref_g), TOL)
        for our_p, ref_p in zip(our_preds, ref_preds):
            self.assertEqual(len(our_p), len(ref_p))
            o_scores, o_boxes, o_labels = _sorted(our_p)
            r_scores, r_boxes, r_labels = _sorted(ref_p)
            self.assertLessEqual(max_rel_diff(o_scores, r_scores), TOL)
            self.assertLessEqual(max_rel_diff(o_boxes, r_boxes), TOL)
            self.assertTrue(torch.equal(o_labels, r_labels))
        return our_losses

    def test_80_classes_100_proposals(self):
        self._check(80, 100, [(96, 128), (80, 112)], [5, 3])

    def test_one_class(self):
        self._check(1, 100, [(96, 128), (80, 112)], [4, 2])

    def test_image_without_boxes(self):
        losses = self._check(80, 100, [(96, 128), (80, 112)], [3, 0])
        self.assertGreater(losses['s5.loss_iou'].item(), 0)

    def test_300_proposals(self):
        self._check(80, 300, [(128, 96)], [7])


class TestDetectorParity(TestCase):
    """The whole R50-FPN detector from our config against MMDetection's."""

    @classmethod
    def setUpClass(cls):
        torch.manual_seed(0)
        ref_cfg, our_cfg = mmdet_config().model, our_config().model
        for cfg in (ref_cfg, our_cfg):
            cfg.backbone.init_cfg = None  # no download of ImageNet weights
        cls.ref = build_in_scope(ref_cfg, 'mmdet', MMDET_MODELS)
        cls.ours = build_in_scope(our_cfg, 'mmdet_sparse', MODELS)

    def test_checkpoint_loads_strict(self):
        ref_sd, our_sd = self.ref.state_dict(), self.ours.state_dict()
        self.assertEqual(sorted(ref_sd), sorted(our_sd))
        self.ours.load_state_dict(ref_sd, strict=True)
        num_params = sum(p.numel() for p in self.ours.parameters())
        self.assertEqual(num_params, 106_290_888)
        stage_params = sum(
            p.numel() for p in self.ours.roi_head.bbox_head[0].parameters())
        self.assertEqual(stage_params, 13_235_412)

    def test_loss_and_predict(self):
        self.ref.init_weights()
        self.ours.load_state_dict(self.ref.state_dict(), strict=True)
        shapes = [(64, 96), (64, 80)]
        samples = data_samples(shapes, [3, 2], seed=1)
        gen = torch.Generator().manual_seed(1)
        inputs = [
            torch.randint(0, 256, (3, h, w), generator=gen).float()
            for h, w in shapes
        ]
        outputs = []
        for model in (self.ref, self.ours):
            model.train()
            data = model.data_preprocessor(
                dict(inputs=inputs, data_samples=copy.deepcopy(samples)),
                True)
            losses = model(**data, mode='loss')
            model.eval()
            with torch.no_grad():
                data = model.data_preprocessor(
                    dict(inputs=inputs, data_samples=copy.deepcopy(samples)),
                    False)
                preds = model(**data, mode='predict')
            outputs.append((losses, preds))
        (ref_losses, ref_preds), (our_losses, our_preds) = outputs
        self.assertEqual(sorted(ref_losses), sorted(our_losses))
        for key in ref_losses:
            self.assertLessEqual(
                max_rel_diff(our_losses[key], ref_losses[key]), TOL, msg=key)
        for our_p, ref_p in zip(our_preds, ref_preds):
            o = _sorted(our_p.pred_instances)
            r = _sorted(ref_p.pred_instances)
            self.assertLessEqual(max_rel_diff(o[0], r[0]), TOL)
            self.assertLessEqual(max_rel_diff(o[1], r[1]), TOL)
