"""QueryInst's mask branch of :class:`SparseRoIHead`."""
import inspect
from typing import List, Optional, Tuple

import numpy as np
import torch
from mmengine.model import ModuleList
from mmengine.structures import InstanceData
from torch import Tensor, nn

from mmdet.utils import ConfigType, InstanceList
from mmdet_sparse.registry import MODELS
from .stage_configs import per_stage
from .mask_heads.mask_ops import (GroundTruthMasks, paste_masks,
                                  select_label_channel)


def _takes_proposal_feats(head: nn.Module) -> bool:
    """Whether ``head.forward`` takes ``(roi_feats, proposal_feats)``."""
    params = inspect.signature(head.forward).parameters.values()
    positional = [
        p for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL
                                       for p in params)


class MaskBranchMixin:
    """Per-stage dynamic mask heads (QueryInst) for :class:`SparseRoIHead`.

    Training: each stage's mask head sees the stage's refined boxes
    (detached) of the proposals matched to a ground-truth box, with the
    stage's post-attention proposal features; the Dice loss of the matched
    box's class channel against the box's mask target is weighted like the
    stage's box losses. Inference: the last stage's mask head runs once per
    distinct proposal among the top-k detections, and each detection takes
    the channel of its label.

    The host class provides ``num_stages``, ``bbox_roi_extractor``,
    ``per_stage`` semantics and ``test_cfg``.
    """

    def init_mask_head(self, mask_roi_extractor: ConfigType,
                       mask_head: ConfigType) -> None:
        """Build one mask head per stage and the mask RoI extractor(s).

        Args:
            mask_roi_extractor (dict | list[dict] | None): One config shared
                by the stages, one per stage, or None to pool with the box
                extractor.
            mask_head (dict | list[dict]): Config of each stage's mask head.
        """
        self.mask_head = ModuleList([
            MODELS.build(cfg)
            for cfg in per_stage(mask_head, self.num_stages, 'mask_head')
        ])
        for stage, head in enumerate(self.mask_head):
            if not _takes_proposal_feats(head):
                raise TypeError(
                    f'mask_head[{stage}] is a {type(head).__name__}, whose '
                    'forward takes RoI features only; SparseRoIHead needs a '
                    "dynamic mask head: type='DynamicMaskHead'")
        if mask_roi_extractor is None:
            self.share_roi_extractor = True
            self.mask_roi_extractor = self.bbox_roi_extractor
        elif isinstance(mask_roi_extractor, (list, tuple)):
            self.share_roi_extractor = False
            self.mask_roi_extractor = ModuleList([
                MODELS.build(cfg) for cfg in per_stage(
                    mask_roi_extractor, self.num_stages, 'mask_roi_extractor')
            ])
        else:
            self.share_roi_extractor = False
            self.mask_roi_extractor = MODELS.build(mask_roi_extractor)

    def _mask_extractor(self, stage: int) -> nn.Module:
        if isinstance(self.mask_roi_extractor, ModuleList):
            return self.mask_roi_extractor[stage]
        return self.mask_roi_extractor

    def _mask_logits(self,
                     stage: int,
                     x: Tuple[Tensor],
                     img_ids: Tensor,
                     boxes: Tensor,
                     attn_feats: Tensor,
                     labels: Tensor,
                     rows: Optional[Tensor] = None) -> Tensor:
        """Mask logits of one class per wanted map.

        Args:
            stage (int): Stage index.
            x (tuple[Tensor]): FPN levels.
            img_ids (Tensor): ``(M,)`` image of each box.
            boxes (Tensor): ``(M, 4)`` boxes, xyxy pixels.
            attn_feats (Tensor): ``(M, C)`` their proposal features.
            labels (Tensor): ``(n,)`` class of each wanted map.
            rows (Tensor, optional): ``(n,)`` box of each wanted map;
                ``arange(M)`` when None.

        Returns:
            Tensor: ``(n, S, S)`` logits.
        """
        rois = torch.cat([img_ids[:, None].to(boxes), boxes], dim=1)
        extractor = self._mask_extractor(stage)
        roi_feats = extractor(x[:extractor.num_inputs], rois)
        head = self.mask_head[stage]
        if hasattr(head, 'label_logits'):
            return head.label_logits(
                head.forward_features(roi_feats, attn_feats), labels, rows)
        # Another head (e.g. MMDetection's): all K maps, then one each.
        if rows is None:
            rows = torch.arange(len(labels), device=labels.device)
        return select_label_channel(head(roi_feats, attn_feats), rows, labels)

    def _mask_loss(self, stage: int, x: Tuple[Tensor], boxes: Tensor,
                   attn_feats: Tensor, matched: Tensor, gt_labels: Tensor,
                   gt_masks: GroundTruthMasks, avg_factor: float) -> Tensor:
        """Unweighted mask loss of one stage.

        Args:
            stage (int): Stage index.
            x (tuple[Tensor]): FPN levels.
            boxes (Tensor): The stage's refined boxes ``(B, N, 4)``,
                detached.
            attn_feats (Tensor): Post-attention features ``(B, N, C)``.
            matched (Tensor): ``(B*N,)`` matched box index or -1.
            gt_labels (Tensor): Labels of all images' boxes.
            gt_masks (GroundTruthMasks): The batch's masks.
            avg_factor (float): Normaliser (matched boxes, averaged over
                processes, at least 1).

        Returns:
            Tensor: The loss (0 connected to the graph without positives).
        """
        num_imgs, num_proposals = boxes.shape[:2]
        pos = torch.nonzero(matched >= 0).squeeze(1)
        pos_gt = matched[pos]
        img_ids = torch.div(pos, num_proposals, rounding_mode='floor')
        pos_boxes = boxes.reshape(-1, 4)[pos]
        logits = self._mask_logits(stage, x, img_ids, pos_boxes,
                                   attn_feats.flatten(0, 1)[pos],
                                   gt_labels[pos_gt])
        if pos.numel() == 0:
            return logits.sum()
        head = self.mask_head[stage]
        cfg = self.train_cfg[stage]
        if 'mask_size' not in cfg:
            raise KeyError(f'train_cfg[{stage}] (model.train_cfg.rcnn) needs '
                           'mask_size (28 in QueryInst) for the mask targets')
        targets = gt_masks.targets(
            pos_boxes, pos_gt, cfg['mask_size'],
            binarize=not cfg.get('soft_mask_target', False))
        # float32 under AMP: the Dice loss sums S*S products per mask,
        # which float16 rounds coarsely.
        return head.loss_mask(logits.float().sigmoid(), targets.float(),
                              avg_factor=avg_factor)

    @staticmethod
    def _gt_masks(batch_data_samples, device) -> GroundTruthMasks:
        """``gt_instances.masks`` of the batch, with a clear error."""
        masks = []
        for i, sample in enumerate(batch_data_samples):
            gt = sample.gt_instances
            if 'masks' not in gt:
                name = sample.metainfo.get('img_path', sample.metainfo.get(
                    'img_id', i))
                raise KeyError(
                    f'image {i} ({name}) has no gt_instances.masks, which '
                    "the mask head needs: use dict(type='LoadAnnotations', "
                    'with_bbox=True, with_mask=True) in the train pipeline')
            masks.append(gt.masks)
        return GroundTruthMasks(masks, device)

    @staticmethod
    def _keep_for_masks(results: List[InstanceData], proposal_index: Tensor,
                        attn_feats: Tensor) -> None:
        """Attach what the mask branch needs to each image's detections:
        ``proposal_index`` ``(k,)`` and ``attn_feats`` ``(k, C)``."""
        for res, idx, feats in zip(results, proposal_index, attn_feats):
            res.proposal_index = idx
            res.attn_feats = feats[idx]

    def predict_mask(self,
                     x: Tuple[Tensor],
                     batch_img_metas: List[dict],
                     results_list: InstanceList,
                     rescale: bool = False) -> InstanceList:
        """Masks of the detections of each image.

        Args:
            x (tuple[Tensor]): FPN levels.
            batch_img_metas (list[dict]): Image metas.
            results_list (list[InstanceData]): Detections from
                :meth:`predict_bbox` (not rescaled), with
                ``proposal_index`` and ``attn_feats``.
            rescale (bool): Boxes and masks in the original image.

        Returns:
            list[InstanceData]: ``bboxes``, ``scores``, ``labels`` and
            ``masks`` ``(k, H, W)`` (bool; uint8 x255 probabilities when
            ``mask_thr_binary < 0``).
        """
        threshold = self.test_cfg.get('mask_thr_binary', 0.5)
        counts = [len(res) for res in results_list]
        prop = torch.cat([res.pop('proposal_index') for res in results_list])
        attn = torch.cat([res.pop('attn_feats') for res in results_list])
        boxes = torch.cat([res.bboxes for res in results_list])
        labels = torch.cat([res.labels for res in results_list])
        device = boxes.device
        img_ids = torch.repeat_interleave(
            torch.arange(len(results_list), device=device),
            torch.as_tensor(counts, device=device))
        probs = boxes.new_zeros((0, 1, 1))
        if len(boxes):
            # A proposal detected with several labels is run once.
            keys = img_ids * (int(prop.max()) + 1) + prop
            uniq, inverse = torch.unique(keys, return_inverse=True)
            first = torch.full_like(uniq, len(keys)).scatter_reduce_(
                0, inverse, torch.arange(len(keys), device=device), 'amin')
            probs = self._mask_logits(self.num_stages - 1, x,
                                      img_ids[first], boxes[first],
                                      attn[first], labels, inverse).sigmoid()
        for res, meta, img_probs in zip(results_list, batch_img_metas,
                                        probs.split(counts)):
            factor = res.bboxes.new_tensor(meta['scale_factor']).repeat(1, 2)
            img_h, img_w = meta['ori_shape'][:2]
            if rescale:
                res.bboxes = res.bboxes / factor
            else:
                img_h = int(np.round(img_h * factor[0, 1].item()))
                img_w = int(np.round(img_w * factor[0, 0].item()))
            res.masks = paste_masks(img_probs, res.bboxes, img_h, img_w,
                                    threshold)
        return results_list
