"""Soft-vote merging: hand-computed groups, and agreement with a plain
re-statement of the paper's procedure (all classes in one pool, kept apart by
shifting each class's boxes far away) on random boxes."""
from unittest import TestCase

import numpy as np
import torch

from mmdet_sparse.models.test_time_augs import soft_vote


def _reference(boxes, scores, labels, iou_thr, soft_thr):
    """The paper's merge on one pool: boxes of class c are shifted by
    ``c * (max coordinate + 1)`` so that classes never overlap."""
    boxes = boxes.astype(np.float64)
    shift = boxes.max() + 1
    det = np.concatenate(
        [boxes + labels[:, None] * shift, scores[:, None], labels[:, None]],
        1)
    det = det[np.argsort(-det[:, 4], kind='stable')]
    out = []
    while len(det):
        area = (det[:, 2] - det[:, 0]) * (det[:, 3] - det[:, 1])
        w = np.clip(np.minimum(det[0, 2], det[:, 2]) -
                    np.maximum(det[0, 0], det[:, 0]), 0, None)
        h = np.clip(np.minimum(det[0, 3], det[:, 3]) -
                    np.maximum(det[0, 1], det[:, 1]), 0, None)
        iou = w * h / (area[0] + area - w * h)
        group, iou_g = det[iou >= iou_thr], iou[iou >= iou_thr]
        det = det[iou < iou_thr]
        if len(group) == 1:
            out.append(group)
            continue
        merged = group[:1].copy()
        merged[0, :4] = (group[:, :4] * group[:, 4:5]).sum(0) / group[:,
                                                                      4].sum()
        merged[0, 4] = group[:, 4].max()
        soft = group.copy()
        soft[:, 4] *= 1 - iou_g
        out += [merged, soft[soft[:, 4] >= soft_thr]]
    out = np.concatenate(out)
    out = out[np.argsort(-out[:, 4], kind='stable')]
    out[:, :4] -= out[:, 5:6] * shift
    return out


class TestSoftVote(TestCase):

    def test_hand_made_groups(self):
        boxes = torch.tensor([
            [0., 0., 10., 10.],  # A, class 0, leads the group
            [0., 0., 10., 11.],  # B: IoU(A) = 100/110, joins
            [20., 20., 30., 30.],  # C: far away, alone
            [1., 0., 11., 10.],  # D: IoU(A) = 90/110, joins
            [0., 3., 10., 13.],  # F: IoU(A) = 70/130 < 0.65, alone
            [0., 0., 10., 10.],  # E: same box as A, other class
        ])
        scores = torch.tensor([0.9, 0.6, 0.5, 0.2, 0.4, 0.8])
        labels = torch.tensor([0, 0, 0, 0, 0, 1])
        out_boxes, out_scores, out_labels = soft_vote(
            boxes, scores, labels, iou_thr=0.65, soft_score_thr=0.05)
        # Group {A, B, D}: box = score-weighted mean (weights 0.9, 0.6,
        # 0.2 of 1.7), score = 0.9. B stays with 0.6 * (1 - 10/11) = 0.6/11
        # >= 0.05; D's 0.2 * (1 - 9/11) = 0.4/11 < 0.05 is dropped.
        merged = [0.2 / 1.7, 0., (9 + 6 + 2.2) / 1.7, (9 + 6.6 + 2) / 1.7]
        expected = torch.tensor([
            merged,
            [0., 0., 10., 10.],  # E
            [20., 20., 30., 30.],  # C
            [0., 3., 10., 13.],  # F
            [0., 0., 10., 11.],  # B, decayed
        ])
        torch.testing.assert_close(out_boxes, expected)
        torch.testing.assert_close(
            out_scores, torch.tensor([0.9, 0.8, 0.5, 0.4, 0.6 / 11]))
        self.assertEqual(out_labels.tolist(), [0, 1, 0, 0, 0])

        # A stricter threshold: B joins (0.909), D (0.818) stays alone.
        out_boxes, out_scores, _ = soft_vote(boxes, scores, labels,
                                             iou_thr=0.85)
        torch.testing.assert_close(
            out_boxes[0], torch.tensor([0., 0., 10., 15.6 / 1.5]))
        torch.testing.assert_close(
            out_scores, torch.tensor([0.9, 0.8, 0.5, 0.4, 0.2, 0.6 / 11]))
        torch.testing.assert_close(out_boxes[4], boxes[3])

    def test_matches_the_pooled_procedure_on_random_boxes(self):
        gen = torch.Generator().manual_seed(0)
        n = 300
        xy = torch.rand(n, 2, generator=gen) * 80
        wh = torch.rand(n, 2, generator=gen) * 30 + 4
        # Jittered copies (still valid boxes), as views of one object give.
        boxes = torch.cat([xy, xy + wh], 1)
        boxes = torch.cat([
            boxes, boxes + torch.randn(n, 4, generator=gen).clamp(-1.5, 1.5)
        ])
        scores = torch.rand(2 * n, generator=gen)
        labels = torch.randint(0, 3, (2 * n, ), generator=gen)
        out_boxes, out_scores, out_labels = soft_vote(
            boxes.double(), scores.double(), labels, 0.65, 0.05)
        ref = _reference(boxes.double().numpy(), scores.double().numpy(),
                         labels.numpy(), 0.65, 0.05)
        self.assertGreater(len(ref), 2 * n * 0.5)
        self.assertLess(len(ref), 2 * n)  # some groups did merge
        np.testing.assert_allclose(out_scores.numpy(), ref[:, 4])
        np.testing.assert_allclose(out_boxes.numpy(), ref[:, :4], atol=1e-9)
        np.testing.assert_array_equal(out_labels.numpy(), ref[:, 5])

    def test_empty_and_bad_input(self):
        b, s, lab = soft_vote(torch.zeros(0, 4), torch.zeros(0),
                              torch.zeros(0, dtype=torch.long))
        self.assertEqual((b.shape, s.shape, lab.shape),
                         ((0, 4), (0, ), (0, )))
        with self.assertRaisesRegex(ValueError, '2 boxes, 1 scores'):
            soft_vote(torch.zeros(2, 4), torch.zeros(1),
                      torch.zeros(2, dtype=torch.long))
