"""Soft-vote merging of detections from several views of one image.

The merge of the Sparse R-CNN paper's test-time augmentation: detections of
all views are pooled and, class by class, the highest-scoring box gathers
every remaining box that overlaps it by at least ``iou_thr``. The group
becomes one box, the score-weighted mean of its members, with the group's
best score. Each other member also stays, with its own box and its score
decayed by ``(1 - IoU)`` with the group's best box, if that decayed score
is at least ``soft_score_thr``. No box is suppressed outright, so the
merge suits the NMS-free outputs of Sparse R-CNN.
"""
from typing import Tuple

import torch
from torch import Tensor


def _iou_with_first(boxes: Tensor) -> Tensor:
    """IoU of ``boxes[0]`` with every box of ``boxes`` ``(n, 4)``, as
    ``(n,)``; a pair whose union is empty has IoU 0."""
    top = boxes[0]
    w = (torch.minimum(top[2], boxes[:, 2]) -
         torch.maximum(top[0], boxes[:, 0])).clamp(min=0)
    h = (torch.minimum(top[3], boxes[:, 3]) -
         torch.maximum(top[1], boxes[:, 1])).clamp(min=0)
    inter = w * h
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = areas[0] + areas - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12),
                       torch.zeros_like(union))


def soft_vote_one_class(boxes: Tensor, scores: Tensor, iou_thr: float,
                        soft_score_thr: float) -> Tuple[Tensor, Tensor]:
    """Soft-vote merge of the boxes of one class.

    Args:
        boxes (Tensor): ``(n, 4)`` boxes, ``x1, y1, x2, y2``.
        scores (Tensor): ``(n,)`` scores.
        iou_thr (float): Boxes with IoU >= this with a group's best box
            join the group.
        soft_score_thr (float): Members kept beside the merged box need a
            decayed score ``score * (1 - IoU)`` of at least this.

    Returns:
        tuple[Tensor, Tensor]: ``(m, 4)`` boxes and ``(m,)`` scores, in the
        order the groups were formed (each merged box followed by the
        members kept with decayed scores).
    """
    order = scores.argsort(descending=True, stable=True)
    boxes, scores = boxes[order], scores[order]
    out_boxes, out_scores = [], []
    while boxes.numel():
        iou = _iou_with_first(boxes)
        member = iou >= iou_thr
        member[0] = True  # the best box leads its group, even if empty
        grp_boxes, grp_scores, grp_iou = (boxes[member], scores[member],
                                          iou[member])
        boxes, scores = boxes[~member], scores[~member]
        if grp_scores.numel() == 1:
            out_boxes.append(grp_boxes)
            out_scores.append(grp_scores)
            continue
        weights = grp_scores / grp_scores.sum()
        out_boxes.append((grp_boxes * weights[:, None]).sum(0, keepdim=True))
        out_scores.append(grp_scores[:1])  # sorted: the first is the max
        decayed = grp_scores[1:] * (1 - grp_iou[1:])
        keep = decayed >= soft_score_thr
        out_boxes.append(grp_boxes[1:][keep])
        out_scores.append(decayed[keep])
    if not out_boxes:
        return boxes.new_zeros((0, 4)), scores.new_zeros((0, ))
    return torch.cat(out_boxes), torch.cat(out_scores)


def soft_vote(boxes: Tensor,
              scores: Tensor,
              labels: Tensor,
              iou_thr: float = 0.65,
              soft_score_thr: float = 0.05) -> Tuple[Tensor, Tensor, Tensor]:
    """Soft-vote merge of pooled detections, class by class.

    Args:
        boxes (Tensor): ``(n, 4)`` boxes, ``x1, y1, x2, y2``.
        scores (Tensor): ``(n,)`` scores.
        labels (Tensor): ``(n,)`` class indices; boxes of different classes
            never merge.
        iou_thr (float): IoU with a group's best box from which a box joins
            the group. Defaults to 0.65.
        soft_score_thr (float): Smallest decayed score of a member kept
            beside its group's merged box. Defaults to 0.05.

    Returns:
        tuple[Tensor, Tensor, Tensor]: ``(m, 4)`` boxes, ``(m,)`` scores and
        ``(m,)`` labels, sorted by descending score, on the inputs' device
        (computed on the CPU).
    """
    if not boxes.shape[0] == scores.shape[0] == labels.shape[0]:
        raise ValueError(f'soft_vote: {boxes.shape[0]} boxes, '
                         f'{scores.shape[0]} scores and {labels.shape[0]} '
                         'labels; give one score and label per box')
    # The greedy grouping is sequential and every group's boolean indexing
    # would wait for the device: run it on the CPU, with one copy each way.
    device = boxes.device
    boxes, scores, labels = boxes.cpu(), scores.cpu(), labels.cpu()
    all_boxes, all_scores, all_labels = [], [], []
    for label in labels.unique():
        idx = labels == label
        b, s = soft_vote_one_class(boxes[idx], scores[idx], iou_thr,
                                   soft_score_thr)
        all_boxes.append(b)
        all_scores.append(s)
        all_labels.append(labels.new_full((s.numel(), ), int(label)))
    if not all_boxes:
        return boxes[:0].to(device), scores[:0].to(device), \
            labels[:0].to(device)
    boxes, scores = torch.cat(all_boxes), torch.cat(all_scores)
    labels = torch.cat(all_labels)
    order = scores.argsort(descending=True, stable=True)
    return (boxes[order].to(device), scores[order].to(device),
            labels[order].to(device))
