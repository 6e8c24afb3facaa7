"""The iterative head of Sparse R-CNN."""
from typing import List, Optional, Sequence, Tuple

import torch
from mmengine.model import ModuleList
from mmengine.structures import InstanceData
from torch import Tensor, nn

from mmdet.models.roi_heads import BaseRoIHead
from mmdet.models.task_modules.samplers import PseudoSampler
from mmdet.structures import SampleList
from mmdet.utils import ConfigType, InstanceList, OptConfigType, reduce_mean
from mmdet_sparse.registry import MODELS, TASK_UTILS
from ..dense_heads.embedding_rpn_head import images_whwh
from .mask_branch import MaskBranchMixin
from .matching import BatchHungarianMatcher
from .detection_filters import filter_detections
from .stage_configs import per_stage


@MODELS.register_module()
class SparseRoIHead(MaskBranchMixin, BaseRoIHead):
    """Sparse R-CNN's cascade of dynamic instance interactive stages, with
    QueryInst's mask heads when ``mask_head`` is given.

    Each stage pools RoI features of the current boxes, refines the proposal
    features with a :class:`DIIHead`, and decodes new boxes. In training
    each stage is matched to the ground truth one-to-one (Hungarian) and
    supervised; boxes are detached between stages, proposal features are
    not. At test time the last stage's ``N x K`` scores give the top
    ``max_per_img`` detections, without NMS. With masks, each stage's
    :class:`DynamicMaskHead` is trained on the proposals that stage matched
    (see :class:`MaskBranchMixin`), and the last one predicts the masks of
    the detections.

    ``feature_reuse=False`` makes it the paper's plain cascade (Table 4):
    every stage starts from the initial proposal features instead of the
    previous stage's object features, so only the (detached) boxes pass
    from stage to stage.

    Args:
        num_stages (int): Number of stages. Defaults to 6.
        stage_loss_weights (Sequence[float]): Loss weight of each stage.
        proposal_feature_channel (int): Proposal feature channels.
        feature_reuse (bool): Each stage takes the previous stage's object
            features (True, the paper's model) or the initial proposal
            features (False, the plain cascade). Defaults to True.
        bbox_roi_extractor (dict | list[dict]): RoI extractor (shared by the
            stages when one dict is given).
        bbox_head (dict | list[dict]): Config of each stage's head.
        mask_roi_extractor (dict | list[dict], optional): Mask RoI
            extractor (shared when one dict is given; None pools with the
            box extractor).
        mask_head (dict | list[dict], optional): Each stage's mask head
            (QueryInst); None for boxes only.
        train_cfg (list[dict], optional): Per stage ``assigner`` (a
            ``HungarianAssigner``), ``sampler`` (``PseudoSampler``),
            ``pos_weight`` and, with masks, ``mask_size``.
        test_cfg (dict, optional): ``max_per_img``; optional ``score_thr``
            and ``clip_to_image`` (see :func:`filter_detections`); with
            masks ``mask_thr_binary``.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self,
                 num_stages: int = 6,
                 stage_loss_weights: Sequence[float] = (1, 1, 1, 1, 1, 1),
                 proposal_feature_channel: int = 256,
                 feature_reuse: bool = True,
                 bbox_roi_extractor: ConfigType = dict(
                     type='ThreadedRoIExtractor',
                     roi_layer=dict(
                         type='RoIAlign', output_size=7, sampling_ratio=2),
                     out_channels=256,
                     featmap_strides=[4, 8, 16, 32]),
                 bbox_head: ConfigType = dict(type='DIIHead'),
                 mask_roi_extractor: OptConfigType = None,
                 mask_head: OptConfigType = None,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 init_cfg: OptConfigType = None) -> None:
        if len(stage_loss_weights) != num_stages:
            raise ValueError(f'{len(stage_loss_weights)} stage_loss_weights '
                             f'for {num_stages} stages')
        self.num_stages = num_stages
        self.stage_loss_weights = list(stage_loss_weights)
        self.proposal_feature_channel = proposal_feature_channel
        self.feature_reuse = feature_reuse
        super().__init__(
            bbox_roi_extractor=bbox_roi_extractor,
            bbox_head=bbox_head,
            mask_roi_extractor=mask_roi_extractor,
            mask_head=mask_head,
            train_cfg=train_cfg,
            test_cfg=test_cfg,
            init_cfg=init_cfg)

    def init_bbox_head(self, bbox_roi_extractor: ConfigType,
                       bbox_head: ConfigType) -> None:
        """Build the RoI extractor(s) and one head per stage."""
        if isinstance(bbox_roi_extractor, (list, tuple)):
            self.bbox_roi_extractor = ModuleList([
                MODELS.build(cfg) for cfg in per_stage(
                    bbox_roi_extractor, self.num_stages, 'bbox_roi_extractor')
            ])
        else:
            self.bbox_roi_extractor = MODELS.build(bbox_roi_extractor)
        self.bbox_head = ModuleList([
            MODELS.build(cfg)
            for cfg in per_stage(bbox_head, self.num_stages, 'bbox_head')
        ])
        for stage, head in enumerate(self.bbox_head):
            if not all(hasattr(head, name) for name in ('decode', 'scores')):
                raise TypeError(
                    f'bbox_head[{stage}] is {type(head).__module__}.'
                    f'{type(head).__name__}; this SparseRoIHead drives '
                    "mmdet_sparse's DIIHead: use type='DIIHead' (same "
                    "parameters and checkpoints), or MMDetection's head "
                    "with its own stages: type='mmdet.SparseRoIHead' with "
                    "bbox_head type='mmdet.DIIHead' (and train_cfg.rcnn a "
                    'list of one dict per stage)')

    def init_assigner_sampler(self) -> None:
        """One batch matcher per stage, from ``train_cfg[stage].assigner``."""
        self.matchers = []
        if self.train_cfg is None:
            return
        stage_cfgs = per_stage(self.train_cfg, self.num_stages, 'train_cfg')
        for stage, cfg in enumerate(stage_cfgs):
            assigner = TASK_UTILS.build(cfg['assigner'])
            if not hasattr(assigner, 'match_costs'):
                raise TypeError(f'train_cfg[{stage}].assigner must be a '
                                'HungarianAssigner (with match_costs), got '
                                f'{type(assigner).__name__}')
            sampler = cfg.get('sampler', dict(type='PseudoSampler'))
            if not isinstance(TASK_UTILS.build(sampler), PseudoSampler):
                raise TypeError('Sparse R-CNN trains every proposal: '
                                f'train_cfg[{stage}].sampler must be '
                                f'PseudoSampler, got {sampler}')
            self.matchers.append(BatchHungarianMatcher(assigner.match_costs))
        self.train_cfg = stage_cfgs

    def _extractor(self, stage: int) -> nn.Module:
        if isinstance(self.bbox_roi_extractor, ModuleList):
            return self.bbox_roi_extractor[stage]
        return self.bbox_roi_extractor

    def _stage_forward(self,
                       stage: int,
                       x: Tuple[Tensor],
                       boxes: Tensor,
                       feats: Tensor,
                       with_attn: bool = False,
                       whwh: Optional[Tensor] = None) -> Tuple[Tensor, ...]:
        """Run one stage on a batch.

        Args:
            stage (int): Stage index.
            x (tuple[Tensor]): FPN levels, each ``(B, C, H_l, W_l)``.
            boxes (Tensor): Current boxes ``(B, N, 4)``, xyxy pixels.
            feats (Tensor): Proposal features ``(B, N, C)``.
            with_attn (bool): Also return the post-attention features.
            whwh (Tensor, optional): ``(B, 4)`` image sizes; needed by a
                head with ``pos_encoding``.

        Returns:
            tuple[Tensor]: logits ``(B, N, K)``, refined boxes ``(B, N, 4)``
            (float32) and proposal features ``(B, N, C)``; with
            ``with_attn`` also the post-attention features ``(B, N, C)``
            (the mask head's input).
        """
        num_imgs, num_proposals = boxes.shape[:2]
        img_ids = torch.arange(
            num_imgs, device=boxes.device,
            dtype=boxes.dtype).repeat_interleave(num_proposals)
        rois = torch.cat([img_ids[:, None], boxes.reshape(-1, 4)], dim=1)
        extractor = self._extractor(stage)
        roi_feats = extractor(x[:extractor.num_inputs], rois)
        head = self.bbox_head[stage]
        cls_score, deltas, feats, attn_feats = self.run_bbox_head(
            stage, roi_feats, boxes, feats, whwh)
        outputs = (cls_score, head.decode(boxes, deltas), feats)
        return outputs + (attn_feats, ) if with_attn else outputs

    def run_bbox_head(self, stage: int, roi_feats: Tensor, boxes: Tensor,
                      feats: Tensor,
                      whwh: Optional[Tensor] = None) -> Tuple[Tensor, ...]:
        """Call the head of ``stage`` with the inputs it takes.

        Args:
            stage (int): Stage index.
            roi_feats (Tensor): ``(B*N, C, S, S)``.
            boxes (Tensor): ``(B, N, 4)`` xyxy pixels.
            feats (Tensor): ``(B, N, C)`` the stage's proposal features.
            whwh (Tensor, optional): ``(B, 4)``; needed when the head has
                ``pos_encoding`` (it gets ``boxes / whwh``).

        Returns:
            tuple[Tensor]: the head's logits, deltas, object and
            post-attention features.
        """
        head = self.bbox_head[stage]
        if not getattr(head, 'pos_encoding', False):
            return head(roi_feats, feats)
        if whwh is None:
            raise ValueError(f'bbox_head[{stage}] encodes the boxes: pass '
                             'the image sizes whwh')
        return head(roi_feats, feats, boxes / whwh[:, None].to(boxes))

    @property
    def _encodes_boxes(self) -> bool:
        """Whether a stage's head takes the boxes (``pos_encoding``)."""
        return any(getattr(head, 'pos_encoding', False)
                   for head in self.bbox_head)

    def stage_feats(self, feats: Tensor, init_feats: Tensor) -> Tensor:
        """Proposal features a stage starts from: the previous stage's
        ``feats`` with ``feature_reuse``, else ``init_feats``."""
        return feats if self.feature_reuse else init_feats

    @staticmethod
    def _proposals(rpn_results_list: InstanceList) -> Tuple[Tensor, Tensor]:
        """Stack per-image proposals to ``(B, N, 4)`` and ``(B, N, C)``."""
        boxes = torch.stack([res.bboxes for res in rpn_results_list])
        feats = torch.stack([res.features for res in rpn_results_list])
        return boxes, feats

    def loss(self, x: Tuple[Tensor], rpn_results_list: InstanceList,
             batch_data_samples: SampleList) -> dict:
        """Losses of all stages, keyed ``s{stage}.{name}``.

        Args:
            x (tuple[Tensor]): FPN levels.
            rpn_results_list (list[InstanceData]): Proposals per image.
            batch_data_samples (list[DetDataSample]): With ``gt_instances``.

        Returns:
            dict[str, Tensor]: ``s{i}.loss_cls``, ``s{i}.pos_acc``,
            ``s{i}.loss_bbox``, ``s{i}.loss_iou`` (and ``s{i}.loss_mask``
            with masks) for every stage ``i``.
        """
        if not self.matchers:
            raise RuntimeError(
                'SparseRoIHead.loss needs train_cfg (per-stage assigner); '
                'the model was built without model.train_cfg.rcnn.')
        metas = [s.metainfo for s in batch_data_samples]
        gt_instances = [s.gt_instances for s in batch_data_samples]
        boxes, feats = self._proposals(rpn_results_list)
        init_feats = feats
        num_proposals = boxes.size(1)
        whwh = images_whwh(metas, boxes).float()
        pred_whwh = whwh.repeat_interleave(num_proposals, dim=0)
        gt_boxes = torch.cat([gt.bboxes for gt in gt_instances]).float()
        gt_labels = torch.cat([gt.labels for gt in gt_instances])
        # Every box is matched when it has a proposal; the normaliser is the
        # number of matched boxes, averaged over processes, and at least one.
        num_matched = sum(min(len(gt), num_proposals) for gt in gt_instances)
        avg_factor = reduce_mean(whwh.new_tensor(float(num_matched)))
        avg_factor = avg_factor.clamp(min=1.0)
        if self.with_mask:
            gt_masks = self._gt_masks(batch_data_samples, boxes.device)
            mask_avg_factor = avg_factor.item()

        losses, used_levels = {}, x[0].new_zeros(len(x), dtype=torch.bool)
        for stage in range(self.num_stages):
            head = self.bbox_head[stage]
            used_levels |= self._levels(stage, boxes, len(x))
            outputs = self._stage_forward(
                stage, x, boxes, self.stage_feats(feats, init_feats),
                with_attn=self.with_mask, whwh=whwh)
            cls_score, new_boxes, feats = outputs[:3]
            matched = self.matchers[stage](cls_score.detach(),
                                           new_boxes.detach(), gt_instances,
                                           whwh, metas)
            pos_mask = matched >= 0
            pos_gt = matched[pos_mask]
            labels = torch.full_like(matched, head.num_classes)
            labels[pos_mask] = gt_labels[pos_gt]
            label_weights = whwh.new_ones(matched.shape)
            pos_weight = self.train_cfg[stage].get('pos_weight', 1)
            if pos_weight > 0:
                label_weights[pos_mask] = pos_weight
            stage_losses = head.loss(
                cls_score.reshape(-1, cls_score.size(-1)),
                new_boxes.reshape(-1, 4), labels, label_weights, pos_mask,
                gt_boxes[pos_gt], pred_whwh[pos_mask], avg_factor)
            weight = self.stage_loss_weights[stage]
            for name, value in stage_losses.items():
                losses[f's{stage}.{name}'] = (
                    value * weight if 'loss' in name else value)
            if self.with_mask:
                losses[f's{stage}.loss_mask'] = weight * self._mask_loss(
                    stage, x, new_boxes.detach(), outputs[3], matched,
                    gt_labels, gt_masks, mask_avg_factor)
            boxes = new_boxes.detach()
        # Levels that no stage pooled from stay in the graph with a zero
        # gradient, so that every parameter takes part in every step (as
        # distributed training without unused-parameter search requires).
        # One host sync for all stages (``tolist``).
        unused = [level for level, used in enumerate(used_levels.tolist())
                  if not used and x[level].requires_grad]
        if unused:
            losses['s0.loss_cls'] = losses['s0.loss_cls'] + sum(
                x[level].sum() * 0 for level in unused)
        return losses

    def _levels(self, stage: int, boxes: Tensor, num_levels: int) -> Tensor:
        """``(num_levels,)`` bool, on ``boxes``' device without a host
        sync: the pyramid levels the extractor of ``stage`` pools ``boxes``
        ``(B, N, 4)`` from."""
        extractor = self._extractor(stage)
        if extractor.num_inputs == 1:
            levels = boxes.new_zeros(1, dtype=torch.long)
        else:
            rois = torch.cat(
                [boxes.new_zeros(boxes.shape[:2] + (1, )), boxes],
                -1).flatten(0, 1)
            levels = extractor.map_roi_levels(rois, extractor.num_inputs)
        return (levels[:, None] == torch.arange(
            num_levels, device=levels.device)).any(0)

    def predict_bbox(self,
                     x: Tuple[Tensor],
                     batch_img_metas: List[dict],
                     rpn_results_list: InstanceList,
                     rcnn_test_cfg: ConfigType,
                     rescale: bool = False) -> InstanceList:
        """Detections of each image: top ``max_per_img`` (proposal, class)
        pairs of the last stage, no NMS.

        Args:
            x (tuple[Tensor]): FPN levels.
            batch_img_metas (list[dict]): Image metas.
            rpn_results_list (list[InstanceData]): Proposals per image.
            rcnn_test_cfg (dict): With ``max_per_img``; optional
                ``score_thr`` and ``clip_to_image`` (see
                :func:`filter_detections`).
            rescale (bool): Map boxes back to the original image size.

        Returns:
            list[InstanceData]: ``bboxes`` ``(k, 4)``, ``scores`` ``(k,)``,
            ``labels`` ``(k,)`` per image, sorted by score; with a mask head
            also ``proposal_index`` ``(k,)`` and ``attn_feats`` ``(k, C)``,
            which :meth:`predict_mask` consumes.
        """
        boxes, feats = self._proposals(rpn_results_list)
        init_feats = feats
        whwh = images_whwh(batch_img_metas,
                           boxes) if self._encodes_boxes else None
        for stage in range(self.num_stages):
            cls_score, boxes, feats, *attn = self._stage_forward(
                stage, x, boxes, self.stage_feats(feats, init_feats),
                with_attn=self.with_mask, whwh=whwh)
        scores = self.bbox_head[-1].scores(cls_score.float())
        num_classes = scores.size(-1)
        scores = scores.flatten(1)  # (B, N*K), proposal-major
        top = min(rcnn_test_cfg.get('max_per_img', 100), scores.size(1))
        top_scores, top_idx = scores.topk(top, dim=1)
        labels = top_idx % num_classes
        box_idx = (top_idx // num_classes)[..., None].expand(-1, -1, 4)
        det_boxes = boxes.gather(1, box_idx)
        if rescale:
            factors = det_boxes.new_tensor(
                [meta['scale_factor'] for meta in batch_img_metas])
            det_boxes = det_boxes / factors.repeat(1, 2)[:, None]
        det_boxes, keep = filter_detections(det_boxes, top_scores,
                                            batch_img_metas, rcnn_test_cfg,
                                            rescale)
        if keep is None:
            keep = [slice(None)] * len(det_boxes)
        results = [
            InstanceData(bboxes=b[k], scores=s[k], labels=lab[k])
            for b, s, lab, k in zip(det_boxes, top_scores, labels, keep)
        ]
        if self.with_mask:
            proposal_index = top_idx // num_classes
            self._keep_for_masks(
                results, [p[k] for p, k in zip(proposal_index, keep)],
                attn[0])
        return results

    def forward(self, x: Tuple[Tensor], rpn_results_list: InstanceList,
                batch_data_samples: SampleList) -> tuple:
        """Raw outputs of every stage, without matching or post-processing.

        Returns:
            tuple: per stage a tuple ``(cls_score (B, N, K), boxes (B, N,
            4))``.
        """
        boxes, feats = self._proposals(rpn_results_list)
        init_feats = feats
        whwh = images_whwh([s.metainfo for s in batch_data_samples],
                           boxes) if self._encodes_boxes else None
        outputs = []
        for stage in range(self.num_stages):
            cls_score, boxes, feats = self._stage_forward(
                stage, x, boxes, self.stage_feats(feats, init_feats),
                whwh=whwh)
            outputs.append((cls_score, boxes))
            boxes = boxes.detach()
        return tuple(outputs)
