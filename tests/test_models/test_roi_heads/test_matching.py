"""BatchHungarianMatcher: non-finite costs in full precision and under
float16 autocast (where a loss scaler skips the step)."""
from unittest import TestCase

import torch
from mmengine.structures import InstanceData

from mmdet.models.task_modules.assigners.match_cost import (BBoxL1Cost,
                                                            FocalLossCost,
                                                            IoUCost)
from mmdet_sparse.models.roi_heads.matching import BatchHungarianMatcher


def _matcher():
    return BatchHungarianMatcher([
        FocalLossCost(weight=2.0),
        BBoxL1Cost(weight=5.0, box_format='xyxy'),
        IoUCost(iou_mode='giou', weight=2.0)
    ])


def _inputs(num_preds=6, num_gts=(2, 3), num_classes=4):
    gen = torch.Generator().manual_seed(0)
    num_imgs = len(num_gts)
    xy = torch.rand(num_imgs, num_preds, 2, generator=gen) * 50
    boxes = torch.cat([xy, xy + 10 + torch.rand(
        num_imgs, num_preds, 2, generator=gen) * 30], -1)
    scores = torch.randn(num_imgs, num_preds, num_classes, generator=gen)
    gts = []
    for n in num_gts:
        gxy = torch.rand(n, 2, generator=gen) * 50
        gts.append(InstanceData(
            bboxes=torch.cat([gxy, gxy + 20], 1),
            labels=torch.randint(0, num_classes, (n, ), generator=gen)))
    whwh = torch.tensor([[100., 80., 100., 80.]] * num_imgs)
    metas = [dict(img_path=f'img_{i}.jpg') for i in range(num_imgs)]
    return scores, boxes, gts, whwh, metas


class TestBatchHungarianMatcher(TestCase):

    def test_one_to_one(self):
        matched = _matcher()(*_inputs())
        self.assertEqual(matched.shape, (12, ))
        self.assertEqual(sorted(matched[:6][matched[:6] >= 0].tolist()),
                         [0, 1])
        self.assertEqual(sorted(matched[6:][matched[6:] >= 0].tolist()),
                         [2, 3, 4])

    def test_non_finite_predictions_raise_in_full_precision(self):
        scores, boxes, gts, whwh, metas = _inputs()
        boxes[1, 2, 0] = float('nan')
        with self.assertRaisesRegex(ValueError, r'img_1\.jpg.*predictions'):
            _matcher()(scores, boxes, gts, whwh, metas)

    def test_non_finite_predictions_under_float16_autocast(self):
        """The loss scaler skips this step: matching goes on, one to one,
        and the non-finite prediction still makes the loss non-finite."""
        scores, boxes, gts, whwh, metas = _inputs()
        scores[0, 4] = float('nan')
        boxes[1, 2, 0] = float('nan')
        with torch.autocast('cpu', dtype=torch.float16):
            matched = _matcher()(scores, boxes, gts, whwh, metas)
        self.assertEqual(sorted(matched[:6][matched[:6] >= 0].tolist()),
                         [0, 1])
        self.assertEqual(sorted(matched[6:][matched[6:] >= 0].tolist()),
                         [2, 3, 4])
        # The non-finite predictions cost the most: they stay unmatched.
        self.assertEqual(matched[4].item(), -1)
        self.assertEqual(matched[6 + 2].item(), -1)

    def test_bfloat16_autocast_has_no_scaler_and_raises(self):
        scores, boxes, gts, whwh, metas = _inputs()
        boxes[0, 0, 0] = float('nan')
        with torch.autocast('cpu', dtype=torch.bfloat16), \
                self.assertRaisesRegex(ValueError, r'img_0\.jpg'):
            _matcher()(scores, boxes, gts, whwh, metas)

    def test_non_finite_ground_truth_always_raises(self):
        scores, boxes, gts, whwh, metas = _inputs()
        gts[1].bboxes[0, 0] = float('nan')
        for dtype in (None, torch.float16):
            with self.subTest(autocast=dtype), self.assertRaisesRegex(
                    ValueError, r'ground-truth box in image 1 \(img_1\.jpg'):
                if dtype is None:
                    _matcher()(scores, boxes, gts, whwh, metas)
                else:
                    with torch.autocast('cpu', dtype=dtype):
                        _matcher()(scores, boxes, gts, whwh, metas)
