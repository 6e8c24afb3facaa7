"""Batched mask targets and mask pasting against MMDetection's."""
from unittest import TestCase, mock

import numpy as np
import torch
from mmengine.config import ConfigDict

from support.helpers import ellipse_masks
from mmdet.models.roi_heads.mask_heads.fcn_mask_head import _do_paste_mask
from mmdet.structures.mask import PolygonMasks, mask_target
from mmdet_sparse.models.roi_heads.mask_heads import (mask_ops,
                                                      mask_targets,
                                                      paste_masks)


def _boxes(num, h, w, gen):
    xy = torch.rand(num, 2, generator=gen) * torch.tensor([w, h]) * 0.8 - 4
    wh = torch.rand(num, 2, generator=gen) * torch.tensor([w, h]) * 0.5 + 2
    return torch.cat([xy, xy + wh], 1)


class TestMaskOps(TestCase):

    def test_mask_targets_equal_mmdetection(self):
        """Images of two mask sizes and one with polygons; boxes partly
        outside the images (clipped as MMDetection clips them)."""
        gen = torch.Generator().manual_seed(0)
        shapes, counts = [(40, 56), (40, 56), (32, 48), (40, 56)], [3, 2, 4, 2]
        gt_masks, boxes, index, per_image = [], [], [], []
        start = 0
        for img, ((h, w), n) in enumerate(zip(shapes, counts)):
            masks = ellipse_masks(_boxes(n, h, w, gen).clamp(min=0), h, w,
                                  seed=img)
            if img == 3:  # polygons: two triangles
                masks = PolygonMasks(
                    [[np.array([2., 2., 30., 4., 10., 30.])],
                     [np.array([20., 5., 50., 20., 25., 35.])]], h, w)
            gt_masks.append(masks)
            pos = torch.randint(0, n, (5, ), generator=gen)
            pos_boxes = _boxes(5, h, w, gen)
            boxes.append(pos_boxes)
            index.append(pos + start)
            per_image.append((pos_boxes, pos))
            start += n
        cfg = ConfigDict(mask_size=28)
        ref = mask_target([b for b, _ in per_image], [i for _, i in per_image],
                          gt_masks, cfg)
        ours = mask_targets(torch.cat(boxes), torch.cat(index), gt_masks, 28)
        self.assertEqual(ours.shape, (20, 28, 28))
        self.assertTrue(torch.equal(ours, ref))
        self.assertGreater(ours.sum(), 0)
        # Soft targets (bitmap images only: polygons are always binary).
        soft = mask_targets(torch.cat(boxes[:3]), torch.cat(index[:3]),
                            gt_masks[:3], 28, binarize=False)
        self.assertTrue(((soft > 0) & (soft < 1)).any())
        self.assertTrue(torch.equal(soft >= 0.5, ours[:15].bool()))

    def test_mask_targets_empty_and_bad_type(self):
        masks = [ellipse_masks(torch.tensor([[2., 2., 9., 9.]]), 16, 16)]
        empty = mask_targets(torch.zeros(0, 4), torch.zeros(0).long(), masks,
                             (14, 10))
        self.assertEqual(empty.shape, (0, 14, 10))
        with self.assertRaisesRegex(TypeError, 'image 0.*with_mask'):
            mask_targets(torch.tensor([[0., 0., 4., 4.]]), torch.tensor([0]),
                         [torch.zeros(1, 16, 16)], 28)

    def test_paste_equals_mmdetection(self):
        gen = torch.Generator().manual_seed(1)
        h, w = 45, 61
        probs = torch.rand(30, 28, 28, generator=gen)
        boxes = _boxes(30, h, w, gen)
        boxes[0] = torch.tensor([-3.0, -2.0, 70.0, 50.0])  # beyond the image
        boxes[1] = torch.tensor([10.0, 10.0, 10.5, 30.0])  # thin
        soft = paste_masks(probs, boxes, h, w, None)
        binary = paste_masks(probs, boxes, h, w, 0.5)
        self.assertEqual(binary.dtype, torch.bool)
        for i in range(len(boxes)):
            out, region = _do_paste_mask(probs[i:i + 1, None], boxes[i:i + 1],
                                         h, w, skip_empty=True)
            ref = torch.zeros(h, w)
            ref[region] = out[0]
            self.assertLess((soft[i] - ref).abs().max().item(), 1e-5)
            ref_binary = torch.zeros(h, w, dtype=torch.bool)
            ref_binary[region] = out[0] >= 0.5
            differ = binary[i] != ref_binary
            self.assertFalse(bool((differ & ((ref - 0.5).abs() > 1e-5))
                                  .any()))
        uint8 = paste_masks(probs, boxes, h, w, -1)
        self.assertEqual(uint8.dtype, torch.uint8)
        self.assertTrue(torch.equal(uint8, (soft * 255).to(torch.uint8)))

    def test_paste_boxes_outside_and_none(self):
        probs = torch.ones(2, 28, 28)
        boxes = torch.tensor([[100., 100., 120., 130.],
                              [-50., -9., -20., -3.]])
        masks = paste_masks(probs, boxes, 40, 50, 0.5)
        self.assertEqual(masks.shape, (2, 40, 50))
        self.assertFalse(masks.any())
        none = paste_masks(probs[:0], boxes[:0], 40, 50, 0.5)
        self.assertEqual(none.shape, (0, 40, 50))

    def test_uint8_masks_in_chunks_equal_float32(self):
        """Off the CPU the stacked masks are uint8 (a quarter of float32's
        memory), converted chunk by chunk: the targets are the same."""
        gen = torch.Generator().manual_seed(2)
        h, w = 40, 56
        gt_masks = [ellipse_masks(_boxes(n, h, w, gen).clamp(min=0), h, w,
                                  seed=n) for n in (3, 4, 2)]
        index = torch.randint(0, 9, (25, ), generator=gen)
        boxes = _boxes(25, h, w, gen)
        ref = mask_ops.GroundTruthMasks(gt_masks, torch.device('cpu'))
        ref_targets = ref.targets(boxes, index, 28)
        self.assertEqual(ref._stacked[(h, w)][0].dtype, torch.float32)
        for chunk_masks in (1, 2, 4, 9):
            with self.subTest(chunk_masks=chunk_masks), mock.patch.object(
                    mask_ops, 'TARGET_CHUNK_BYTES', chunk_masks * h * w * 4):
                compact = mask_ops.GroundTruthMasks(gt_masks,
                                                    torch.device('cpu'))
                # Stand-in for a GPU: the stack the accelerator keeps.
                compact._stacked[(h, w)] = (
                    ref._stacked[(h, w)][0].to(torch.uint8),
                    ref._stacked[(h, w)][1])
                for binarize in (True, False):
                    self.assertTrue(torch.equal(
                        compact.targets(boxes, index, 28, binarize),
                        ref.targets(boxes, index, 28, binarize)))
        self.assertTrue(torch.equal(ref_targets, ref.targets(boxes, index,
                                                             28)))

    def test_stack_dtype_by_device(self):
        masks = [ellipse_masks(torch.tensor([[2., 2., 9., 9.]]), 16, 16)]
        cpu = mask_ops.GroundTruthMasks(masks, torch.device('cpu'))
        self.assertEqual(cpu._stack((16, 16))[0].dtype, torch.float32)
        meta = mask_ops.GroundTruthMasks(masks, torch.device('meta'))
        self.assertEqual(meta._stack((16, 16))[0].dtype, torch.uint8)

    def test_paste_ignores_autocast(self):
        """Pasted under AMP, masks equal a float32 paste (the products are
        not run in reduced precision)."""
        gen = torch.Generator().manual_seed(3)
        h, w = 45, 61
        probs = torch.rand(30, 28, 28, generator=gen)
        boxes = _boxes(30, h, w, gen)
        ref = paste_masks(probs, boxes, h, w, None)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            amp = paste_masks(probs, boxes, h, w, None)
        self.assertEqual(amp.dtype, torch.float32)
        self.assertTrue(torch.equal(amp, ref))
