"""Hungarian matching of a whole batch with MMDetection's match costs."""
import logging
from typing import List

import numpy as np
import torch
from mmengine.logging import print_log
from mmengine.structures import InstanceData
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from mmdet.models.task_modules.assigners.match_cost import (
    BBoxL1Cost, ClassificationCost, FocalLossCost, IoUCost)

# Costs whose (pred, gt) entries depend on that pair only and not on the
# image, so one call can cover every image of the batch.
_PAIRWISE_COSTS = (FocalLossCost, ClassificationCost, IoUCost)


def _image_name(meta: dict, index: int) -> str:
    name = meta.get('img_path') or meta.get('img_id')
    return f'image {index} ({name})' if name is not None else f'image {index}'


def _loss_scaled_autocast(device_type: str) -> bool:
    """Whether float16 autocast is on for ``device_type`` (mixed precision
    with a loss scaler, which skips steps with non-finite gradients)."""
    return (torch.is_autocast_enabled(device_type)
            and torch.get_autocast_dtype(device_type) == torch.float16)


class BatchHungarianMatcher:
    """One-to-one matching of ``N`` predictions per image to its boxes.

    The cost terms of an MMDetection ``HungarianAssigner`` are evaluated once
    for the whole batch (``B*N`` predictions against all ``M`` boxes), copied
    to the host once, and each image's diagonal block is solved with
    ``scipy.optimize.linear_sum_assignment``. Costs that need the image (any
    other than focal, classification, IoU and xyxy L1) are evaluated image
    by image.

    Args:
        match_costs (list): Built MMDetection match costs, summed.
    """

    def __init__(self, match_costs: List) -> None:
        self.match_costs = list(match_costs)

    @torch.no_grad()
    def __call__(self, cls_scores: Tensor, boxes: Tensor,
                 gt_instances: List[InstanceData], img_whwh: Tensor,
                 batch_img_metas: List[dict]) -> Tensor:
        """Match predictions to ground truth.

        Args:
            cls_scores (Tensor): Logits ``(B, N, K)``.
            boxes (Tensor): Predicted boxes ``(B, N, 4)``, xyxy pixels.
            gt_instances (list[InstanceData]): ``B`` items with ``bboxes``
                ``(M_i, 4)`` and ``labels`` ``(M_i,)``.
            img_whwh (Tensor): ``(B, 4)`` image ``(w, h, w, h)``.
            batch_img_metas (list[dict]): Image metas (for error messages and
                image-dependent costs).

        Returns:
            Tensor: ``(B*N,)`` long: for each prediction the index of its box
            in the concatenation of all images' boxes, or -1.
        """
        num_imgs, num_preds = boxes.shape[:2]
        device = boxes.device
        counts = [len(gt) for gt in gt_instances]
        matched = torch.full((num_imgs * num_preds, ), -1, dtype=torch.long)
        if sum(counts) == 0:
            return matched.to(device)

        preds = InstanceData(
            scores=cls_scores.reshape(-1, cls_scores.size(-1)).float(),
            bboxes=boxes.reshape(-1, 4).float())
        gts = InstanceData(
            labels=torch.cat([gt.labels for gt in gt_instances]),
            bboxes=torch.cat([gt.bboxes for gt in gt_instances]).float())
        pred_whwh = img_whwh.repeat_interleave(num_preds, dim=0)
        gt_whwh = img_whwh.repeat_interleave(
            torch.as_tensor(counts, device=device), dim=0)

        cost = boxes.new_zeros((len(preds), len(gts)), dtype=torch.float32)
        for match_cost in self.match_costs:
            if isinstance(match_cost, _PAIRWISE_COSTS):
                cost += match_cost(preds, gts)
            elif (isinstance(match_cost, BBoxL1Cost)
                  and match_cost.box_format == 'xyxy'):
                # Normalise each box by its own image; a unit image shape
                # then makes the cost's own normalisation a no-op.
                cost += match_cost(
                    InstanceData(bboxes=preds.bboxes / pred_whwh),
                    InstanceData(bboxes=gts.bboxes / gt_whwh),
                    img_meta=dict(img_shape=(1, 1)))
            else:
                self._add_per_image(cost, match_cost, preds, gt_instances,
                                    batch_img_metas, num_preds)
        cost = cost.cpu().numpy()
        scaled = _loss_scaled_autocast(boxes.device.type)

        matched_np = matched.numpy()
        gt_start = 0
        for i, num_gts in enumerate(counts):
            rows = slice(i * num_preds, (i + 1) * num_preds)
            block = cost[rows, gt_start:gt_start + num_gts]
            if num_gts and not np.isfinite(block).all():
                block = self._non_finite(block, gt_instances[i],
                                         batch_img_metas[i], i, scaled)
            if num_gts:
                pred_idx, gt_idx = linear_sum_assignment(block)
                matched_np[i * num_preds + pred_idx] = gt_start + gt_idx
            gt_start += num_gts
        return matched.to(device)

    @staticmethod
    def _non_finite(block: np.ndarray, gt: InstanceData, meta: dict,
                    index: int, scaled: bool) -> np.ndarray:
        """Handle non-finite costs of one image's ``(N, M)`` block.

        Non-finite ground-truth boxes are bad annotations: always an error.
        Non-finite predictions are an error in full precision (diverged
        training). Under float16 autocast, where a loss scaler skips steps
        whose gradients are not finite, they are an overflow of that step:
        the non-finite costs are replaced by a finite maximum, the matching
        goes on, and the step's non-finite loss makes the scaler skip it.
        Every process continues (no process raises alone), and DDP's
        gradient all-reduce spreads the non-finite values to every rank, so
        all ranks skip the same step.

        Returns:
            np.ndarray: The block, finite.

        Raises:
            ValueError: Naming the image, when the ground truth is not
                finite or (outside float16 autocast) the predictions.
        """
        name = _image_name(meta, index)
        if not bool(torch.isfinite(gt.bboxes).all()):
            raise ValueError(
                f'Non-finite ground-truth box in {name}: its annotations '
                'hold NaN/Inf; fix or drop them.')
        if not scaled:
            raise ValueError(
                f'Non-finite matching cost for {name}: the predictions hold '
                'NaN/Inf (diverged training: lower the learning rate or '
                'enable gradient clipping).')
        print_log(
            f'Non-finite predictions for {name} under float16 autocast: '
            'matched with a finite stand-in cost; the loss scaler skips '
            'this step.', logger='current', level=logging.WARNING)
        finite = block[np.isfinite(block)]
        top = float(np.abs(finite).max()) + 1.0 if finite.size else 1.0
        return np.nan_to_num(block, nan=top, posinf=top, neginf=-top)

    @staticmethod
    def _add_per_image(cost: Tensor, match_cost, preds: InstanceData,
                       gt_instances: List[InstanceData],
                       batch_img_metas: List[dict], num_preds: int) -> None:
        """Add an image-dependent cost on the diagonal blocks of ``cost``."""
        gt_start = 0
        for i, gt in enumerate(gt_instances):
            rows = slice(i * num_preds, (i + 1) * num_preds)
            cols = slice(gt_start, gt_start + len(gt))
            if len(gt):
                gt_i = InstanceData(
                    labels=gt.labels, bboxes=gt.bboxes.float())
                cost[rows, cols] += match_cost(
                    preds[rows], gt_i, img_meta=batch_img_metas[i])
            gt_start += len(gt)
