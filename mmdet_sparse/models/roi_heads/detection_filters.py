"""Optional test-time filters of Sparse R-CNN's detections."""
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from mmdet.utils import ConfigType


def filter_detections(boxes: Tensor, scores: Tensor, metas: List[dict],
                      test_cfg: ConfigType,
                      rescale: bool) -> Tuple[Tensor, Optional[Tensor]]:
    """The optional test-time filters of ``test_cfg``, on a batch.

    * ``score_thr`` (float, default None = off): keep detections with
      ``score > score_thr`` (MMDetection's convention).
    * ``clip_to_image`` (bool, default False): clip boxes to the image
      (``ori_shape`` when ``rescale``, else ``img_shape``) and drop those
      left without area, as the authors' detectron2 post-processing does.

    Args:
        boxes (Tensor): ``(B, k, 4)`` detections, xyxy.
        scores (Tensor): ``(B, k)``.
        metas (list[dict]): Image metas.
        test_cfg (dict): The head's test config.
        rescale (bool): Whether ``boxes`` are in original-image pixels.

    Returns:
        tuple: boxes ``(B, k, 4)`` (clipped when asked) and a ``(B, k)``
        bool mask of the detections to keep, or None when no filter is on.
    """
    keep = None
    score_thr = test_cfg.get('score_thr', None)
    if score_thr is not None:
        keep = scores > score_thr
    if test_cfg.get('clip_to_image', False):
        key = 'ori_shape' if rescale else 'img_shape'
        hw = boxes.new_tensor([meta[key][:2] for meta in metas])
        whwh = hw.flip(1).repeat(1, 2)[:, None]  # (B, 1, 4)
        boxes = torch.minimum(boxes.clamp(min=0), whwh)
        nonempty = ((boxes[..., 2] - boxes[..., 0] > 0) &
                    (boxes[..., 3] - boxes[..., 1] > 0))
        keep = nonempty if keep is None else keep & nonempty
    return boxes, keep
