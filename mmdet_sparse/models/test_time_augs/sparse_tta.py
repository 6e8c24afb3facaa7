"""Test-time augmentation for Sparse R-CNN as the paper ran it.

Used through MMDetection's TTA machinery: ``tta_model`` wraps the detector,
``tta_pipeline`` (a ``TestTimeAug``) makes the views, and
``tools/test.py --tta`` puts the two in place. Each view is one shortest-side
scale, flipped or not. Per view, a detection is kept only if its size in that
view's resized image lies in the range given for the view's scale (small
scales keep the large objects, large scales the small ones); its box is then
un-flipped (it is already in original-image coordinates). The kept
detections of all views are merged by :func:`soft_vote` (no NMS), the best
``max_per_img`` are kept and clipped to the image.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmdet.models.test_time_augs import DetTTAModel
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import bbox_flip
from mmengine.structures import InstanceData
from torch import Tensor

from mmdet_sparse.registry import MODELS
from .soft_vote import soft_vote


def _scale_key(scale: Sequence) -> Tuple[int, ...]:
    """Order-free key of a ``Resize`` scale (with ``keep_ratio`` the order
    of the two sides does not matter)."""
    return tuple(sorted(int(v) for v in scale))


@MODELS.register_module()
class SparseRCNNTTAModel(DetTTAModel):
    """Merge multi-scale, flipped views of NMS-free detections by soft vote.

    Args:
        module (dict | nn.Module): The detector.
        iou_thr (float): IoU from which boxes of one class vote together.
            Defaults to 0.65.
        soft_score_thr (float): Smallest decayed score of a voting box kept
            beside the merged one. Defaults to 0.05.
        max_per_img (int): Detections kept per image after merging.
            Defaults to 100.
        size_ranges (list[dict], optional): Per view scale, the range of box
            sizes that view keeps: ``dict(scale=(4000, 400), range=(96,
            10000))`` keeps boxes with ``lo**2 < w * h < hi**2``, ``w, h``
            measured in that view's resized image. ``scale`` is the view's
            ``Resize`` scale (either order), read from the ``scale`` meta
            key (add it to ``PackDetInputs.meta_keys``). None keeps all.
        clip_to_image (bool): Clip the merged boxes to the original image.
            Defaults to True.
        **kwargs: ``data_preprocessor``, ``init_cfg`` of ``BaseTTAModel``.
    """

    def __init__(self,
                 module,
                 iou_thr: float = 0.65,
                 soft_score_thr: float = 0.05,
                 max_per_img: int = 100,
                 size_ranges: Optional[List[dict]] = None,
                 clip_to_image: bool = True,
                 **kwargs) -> None:
        super().__init__(module=module, **kwargs)
        self.iou_thr = iou_thr
        self.soft_score_thr = soft_score_thr
        self.max_per_img = max_per_img
        self.clip_to_image = clip_to_image
        self.size_ranges: Optional[Dict[Tuple[int, ...], Tuple[float,
                                                               float]]] = None
        if size_ranges is not None:
            self.size_ranges = {}
            for item in size_ranges:
                if set(item) != {'scale', 'range'}:
                    raise ValueError(
                        'each size_ranges entry is dict(scale=(w, h), '
                        f'range=(min_size, max_size)), got {item}')
                lo, hi = (float(v) for v in item['range'])
                if not 0 <= lo < hi:
                    raise ValueError(f'size range {item["range"]} of scale '
                                     f'{item["scale"]}: need 0 <= min < max')
                self.size_ranges[_scale_key(item['scale'])] = (lo, hi)

    def size_keep(self, bboxes: Tensor, metainfo: dict) -> Tensor:
        """Boolean ``(n,)`` mask of the boxes ``(n, 4)`` (original-image
        coordinates) whose size in the view's resized image is in range."""
        if self.size_ranges is None:
            return bboxes.new_ones(bboxes.shape[0], dtype=torch.bool)
        if 'scale' not in metainfo:
            raise KeyError(
                'SparseRCNNTTAModel.size_ranges needs each view\'s Resize '
                "scale: add 'scale' to PackDetInputs.meta_keys in "
                'tta_pipeline')
        key = _scale_key(metainfo['scale'])
        if key not in self.size_ranges:
            raise KeyError(
                f'view of {metainfo.get("img_path", "an image")} has Resize '
                f'scale {tuple(metainfo["scale"])}, which size_ranges does '
                f'not list ({sorted(self.size_ranges)}); give every '
                'tta_pipeline scale a range')
        lo, hi = self.size_ranges[key]
        sx, sy = (float(v) for v in metainfo['scale_factor'])
        areas = ((bboxes[:, 2] - bboxes[:, 0]) * sx) * (
            (bboxes[:, 3] - bboxes[:, 1]) * sy)
        return (areas > lo * lo) & (areas < hi * hi)

    def _merge_single_sample(
            self, data_samples: List[DetDataSample]) -> DetDataSample:
        """Merge the views of one image into one prediction.

        Args:
            data_samples (list[DetDataSample]): The views' predictions, with
                ``bboxes`` ``(n, 4)`` in original-image coordinates (flipped
                if the view was), ``scores`` ``(n,)``, ``labels`` ``(n,)``.

        Returns:
            DetDataSample: The first view's sample with the merged
            ``pred_instances`` (at most ``max_per_img``, by score).
        """
        boxes, scores, labels = [], [], []
        for sample in data_samples:
            pred, meta = sample.pred_instances, sample.metainfo
            keep = self.size_keep(pred.bboxes, meta)
            b = pred.bboxes[keep]
            if meta.get('flip', False):
                b = bbox_flip(b, meta['ori_shape'], meta['flip_direction'])
            boxes.append(b)
            scores.append(pred.scores[keep])
            labels.append(pred.labels[keep])
        boxes, scores, labels = soft_vote(
            torch.cat(boxes), torch.cat(scores), torch.cat(labels),
            self.iou_thr, self.soft_score_thr)
        boxes, scores = boxes[:self.max_per_img], scores[:self.max_per_img]
        labels = labels[:self.max_per_img]
        if self.clip_to_image:
            h, w = data_samples[0].metainfo['ori_shape'][:2]
            boxes = torch.stack([
                boxes[:, 0].clamp(0, w), boxes[:, 1].clamp(0, h),
                boxes[:, 2].clamp(0, w), boxes[:, 3].clamp(0, h)
            ], -1)
        merged = data_samples[0]
        merged.pred_instances = InstanceData(
            bboxes=boxes, scores=scores, labels=labels)
        return merged
