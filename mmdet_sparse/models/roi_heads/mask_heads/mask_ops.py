"""Batched mask targets (training) and mask pasting (inference).

:class:`GroundTruthMasks` crops every positive's ground-truth mask to its
box and resizes it, for a whole batch in one RoIAlign per mask size, with
the masks converted to float once for all stages (MMDetection's
``mask_target`` works image by image and stage by stage, copying each
positive's full-image mask first). :func:`paste_masks` places ``S x S``
mask probabilities into the image, for all detections of an image at once,
with the bilinear sampling of MMDetection's ``_do_paste_mask`` written as
two matrix products (bilinear interpolation on an axis-aligned grid is
separable).
"""
from collections import defaultdict
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmcv.ops import roi_align
from torch import Tensor
from torch.nn.modules.utils import _pair

from mmdet.structures.mask import BitmapMasks, PolygonMasks

# Largest float buffer (bytes) one chunk of pasted masks may take.
PASTE_CHUNK_BYTES = 64 * 1024**2


def _mask_size(masks) -> Tuple[int, int]:
    return int(masks.height), int(masks.width)


# float32 bytes of uint8 ground-truth masks converted at a time for their
# RoIAlign crops (off the CPU, see GroundTruthMasks._stack).
TARGET_CHUNK_BYTES = 64 * 2**20


class GroundTruthMasks:
    """A batch's ground-truth masks, prepared once for every stage.

    Bitmap masks of images of one size are stacked into one tensor (on
    first use), so that each stage's targets take one RoIAlign call per
    size; polygon masks are cropped image by image, as MMDetection does.

    Args:
        gt_masks (list[BitmapMasks | PolygonMasks]): Masks of each image's
            ground-truth instances.
        device (torch.device): Device of the targets.
    """

    def __init__(self, gt_masks: Sequence[Union[BitmapMasks, PolygonMasks]],
                 device: torch.device) -> None:
        for img, masks in enumerate(gt_masks):
            if not isinstance(masks, (BitmapMasks, PolygonMasks)):
                raise TypeError(
                    f'gt_instances.masks of image {img} is a '
                    f'{type(masks).__name__}; expected BitmapMasks or '
                    'PolygonMasks (LoadAnnotations with with_mask=True)')
        self.gt_masks = list(gt_masks)
        self.device = device
        self.starts = np.concatenate([[0], np.cumsum(
            [len(masks) for masks in gt_masks])]).astype(np.int64)
        self.groups = defaultdict(list)  # size or polygon image -> images
        for img, masks in enumerate(gt_masks):
            key = _mask_size(masks) if isinstance(masks, BitmapMasks) \
                else ('polygon', img)
            self.groups[key].append(img)
        self._stacked = {}

    def _stack(self, key) -> Tuple[Tensor, dict]:
        """``(G, H, W)`` masks of a size group and each image's first row
        in it: float32 on the CPU, uint8 elsewhere (a quarter of the
        accelerator memory; :meth:`_crop` converts them chunk by chunk)."""
        if key not in self._stacked:
            imgs = self.groups[key]
            offsets = dict(zip(imgs, np.cumsum(
                [0] + [len(self.gt_masks[i]) for i in imgs[:-1]]).tolist()))
            masks = np.concatenate([self.gt_masks[i].masks for i in imgs])
            dtype = torch.float32 if self.device.type == 'cpu' \
                else torch.uint8
            self._stacked[key] = (torch.from_numpy(masks).to(
                device=self.device, dtype=dtype), offsets)
        return self._stacked[key]

    @staticmethod
    def _crop(stacked: Tensor, index: np.ndarray, boxes: Tensor,
              size: Tuple[int, int]) -> Tensor:
        """RoIAlign crops ``(k, h, w)`` (float32) of masks
        ``stacked[index[i]]`` ``(G, H, W)`` by ``boxes[i]`` ``(k, 4)``.

        uint8 masks are converted to float32 in chunks of about
        :data:`TARGET_CHUNK_BYTES`; each crop depends on its own mask and
        box only, so the values equal one float32 call's.
        """
        def crop(masks: Tensor, rows, idx: np.ndarray) -> Tensor:
            rois = torch.cat([
                torch.as_tensor(idx, device=boxes.device,
                                dtype=torch.float32)[:, None], boxes[rows]
            ], 1)
            return roi_align(masks.float()[:, None], rois, size, 1.0, 0,
                             'avg', True).squeeze(1)

        if stacked.dtype == torch.float32:
            return crop(stacked, slice(None), index)
        step = max(1, TARGET_CHUNK_BYTES // (4 * stacked[0].numel()))
        out = boxes.new_empty((len(boxes), *size))
        for start in range(0, stacked.size(0), step):
            rows = np.flatnonzero((index >= start) & (index < start + step))
            if len(rows):
                rows_t = torch.as_tensor(rows, device=boxes.device)
                out[rows_t] = crop(stacked[start:start + step], rows_t,
                                   index[rows] - start)
        return out

    def targets(self, boxes: Tensor, gt_index: Tensor,
                mask_size: Union[int, Tuple[int, int]],
                binarize: bool = True) -> Tensor:
        """The mask target of each positive box.

        As MMDetection's ``mask_target``: each box is clipped to its image's
        mask extent, its matched mask is cropped to it by RoIAlign
        (``aligned=True``, adaptive sampling) and, with ``binarize``,
        thresholded at 0.5.

        Args:
            boxes (Tensor): ``(P, 4)`` positive boxes, xyxy pixels.
            gt_index (Tensor): ``(P,)`` index of each box's match in the
                concatenation of all images' ground-truth instances.
            mask_size (int | tuple[int, int]): Target ``(h, w)``.
            binarize (bool): Threshold the targets at 0.5.

        Returns:
            Tensor: ``(P, h, w)`` float32 targets, in the order of ``boxes``.
        """
        size = _pair(mask_size)
        device = self.device
        out = torch.zeros((len(boxes), *size), dtype=torch.float32,
                          device=device)
        if len(boxes) == 0:
            return out
        gt_index_np = gt_index.cpu().numpy()
        img_of = np.searchsorted(self.starts, gt_index_np, side='right') - 1
        boxes = boxes.detach().float()
        for key, imgs in self.groups.items():
            rows = np.flatnonzero(np.isin(img_of, imgs))
            if len(rows) == 0:
                continue
            height, width = _mask_size(self.gt_masks[imgs[0]])
            bounds = boxes.new_tensor([width, height, width, height])
            clipped = torch.minimum(boxes[rows].clamp(min=0), bounds)
            local = gt_index_np[rows] - self.starts[img_of[rows]]
            rows_t = torch.as_tensor(rows, device=device)
            if key[0] == 'polygon':
                targets = self.gt_masks[imgs[0]].crop_and_resize(
                    clipped.cpu().numpy(), size, inds=local, device=device,
                    binarize=binarize).to_ndarray()
                out[rows_t] = torch.as_tensor(targets, dtype=torch.float32,
                                              device=device)
                continue
            stacked, offsets = self._stack(key)
            local = local + np.array([offsets[i] for i in img_of[rows]])
            targets = self._crop(stacked, local, clipped, size)
            if binarize:
                targets = (targets >= 0.5).float()
            out[rows_t] = targets
        return out


def mask_targets(boxes: Tensor,
                 gt_index: Tensor,
                 gt_masks: Sequence[Union[BitmapMasks, PolygonMasks]],
                 mask_size: Union[int, Tuple[int, int]],
                 binarize: bool = True) -> Tensor:
    """The mask target of each positive box (see
    :meth:`GroundTruthMasks.targets`; ``gt_masks`` as there)."""
    return GroundTruthMasks(gt_masks, boxes.device).targets(
        boxes, gt_index, mask_size, binarize)


def _axis_weights(lo: Tensor, hi: Tensor, start: Tensor, length: int,
                  size: int) -> Tensor:
    """Bilinear weights ``(k, length, size)`` of image pixels
    ``start .. start+length-1`` on a mask axis of ``size`` cells spanning
    ``[lo, hi]``, as ``grid_sample`` (zero padding, ``align_corners=False``)
    computes them for MMDetection's paste grid."""
    pixels = start[:, None] + torch.arange(
        length, device=lo.device, dtype=torch.float32) + 0.5
    grid = (pixels - lo[:, None]) / (hi - lo)[:, None] * 2 - 1
    grid = torch.where(torch.isinf(grid), torch.zeros_like(grid), grid)
    pos = ((grid + 1) * size - 1) / 2
    pos = torch.where(torch.isfinite(pos), pos, torch.full_like(pos, -2.0))
    left = pos.floor()
    w_right = pos - left
    w_left = (left + 1) - pos
    # Slot 0 and slot size+1 collect taps outside the mask (zero padding).
    slot_left = (left + 1).clamp(0, size + 1).long()
    slot_right = (left + 2).clamp(0, size + 1).long()
    weights = pos.new_zeros((*pos.shape, size + 2))
    weights.scatter_add_(2, slot_left[..., None], w_left[..., None])
    weights.scatter_add_(2, slot_right[..., None], w_right[..., None])
    return weights[..., 1:size + 1]


def paste_masks(probs: Tensor, boxes: Tensor, img_h: int, img_w: int,
                threshold: Optional[float]) -> Tensor:
    """Binary image masks from per-box mask probabilities.

    Matches MMDetection's CPU paste (``_do_paste_mask`` with ``skip_empty``,
    then ``>= threshold``): each mask is sampled bilinearly (zero padding)
    at the pixel centres of its box's region ``[floor(x1) - 1, ceil(x2) +
    1)`` x ``[floor(y1) - 1, ceil(y2) + 1)`` (clipped to the image), and
    pixels outside that region are False. Values agree with
    ``grid_sample`` up to float rounding.

    Args:
        probs (Tensor): ``(k, S, S)`` mask probabilities.
        boxes (Tensor): ``(k, 4)`` boxes, xyxy pixels of the output image.
        img_h (int): Output height.
        img_w (int): Output width.
        threshold (float, optional): Binarisation threshold; None returns
            the float32 probabilities.

    Returns:
        Tensor: ``(k, img_h, img_w)`` bool (uint8 probabilities x255 when
        ``threshold < 0``, float32 when None).
    """
    with torch.autocast(probs.device.type, enabled=False):
        # Under AMP the matrix products below would run in float16 and
        # move probabilities across the threshold.
        return _paste_masks(probs, boxes, img_h, img_w, threshold)


def _paste_masks(probs: Tensor, boxes: Tensor, img_h: int, img_w: int,
                 threshold: Optional[float]) -> Tensor:
    """:func:`paste_masks` without autocast."""
    num, mask_h, mask_w = probs.shape
    if threshold is None:
        dtype = torch.float32
    else:
        dtype = torch.bool if threshold >= 0 else torch.uint8
    out = torch.zeros((num, img_h, img_w), dtype=dtype, device=probs.device)
    if num == 0:
        return out
    boxes = boxes.float()
    probs = probs.float()
    x0_int = (boxes[:, 0].floor() - 1).clamp(min=0).int()
    y0_int = (boxes[:, 1].floor() - 1).clamp(min=0).int()
    x1_int = (boxes[:, 2].ceil() + 1).clamp(max=img_w).int()
    y1_int = (boxes[:, 3].ceil() + 1).clamp(max=img_h).int()
    heights = (y1_int - y0_int).clamp(min=0)
    widths = (x1_int - x0_int).clamp(min=0)
    regions = torch.stack([y0_int, heights, x0_int, widths], 1).tolist()
    order = torch.argsort(heights * widths, descending=True).tolist()
    start = 0
    while start < num:
        # Grow the chunk while its (count, max height, max width) buffer
        # stays within PASTE_CHUNK_BYTES.
        stop, height, width = start + 1, *regions[order[start]][1::2]
        while stop < num:
            h_next = max(height, regions[order[stop]][1])
            w_next = max(width, regions[order[stop]][3])
            if (stop + 1 - start) * h_next * w_next * 4 > PASTE_CHUNK_BYTES:
                break
            stop, height, width = stop + 1, h_next, w_next
        idx = torch.as_tensor(order[start:stop], device=probs.device)
        row_w = _axis_weights(boxes[idx, 1], boxes[idx, 3],
                              y0_int[idx].float(), height, mask_h)
        col_w = _axis_weights(boxes[idx, 0], boxes[idx, 2],
                              x0_int[idx].float(), width, mask_w)
        values = row_w @ (probs[idx] @ col_w.transpose(1, 2))
        if threshold is None:
            binary = values
        elif threshold >= 0:
            binary = values >= threshold
        else:  # probabilities x255, as MMDetection gives for debugging
            binary = (values * 255).to(torch.uint8)
        for j, m in enumerate(order[start:stop]):
            y0, h, x0, w = regions[m]
            out[m, y0:y0 + h, x0:x0 + w] = binary[j, :h, :w]
        start = stop
    return out


def select_label_channel(mask_logits: Tensor, rows: Tensor,
                         labels: Tensor) -> Tensor:
    """``mask_logits[rows[i], labels[i]]`` for each ``i``: ``(n, S, S)``;
    a class-agnostic head (one channel) ignores ``labels``."""
    if mask_logits.size(1) == 1:
        return mask_logits[rows, 0]
    return mask_logits[rows, labels]

