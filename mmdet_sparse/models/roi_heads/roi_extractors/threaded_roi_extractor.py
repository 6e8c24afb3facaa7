"""Multi-level RoIAlign that uses every CPU core.

The CPU kernels of RoIAlign (mmcv's and torchvision's, which compute the
same values bit for bit) run on one thread, and their backward pass
recomputes the bilinear weights for every channel. Here:

* forward: the work is split into independent tasks, one per (pyramid level,
  image, channel block), and torchvision's kernel runs them on a thread pool
  (it releases the GIL). Every task reads and writes a disjoint block in the
  kernel's own order, so the values are bit-identical to one call.
* backward: the bilinear sampling of all levels is one sparse matrix ``A``
  (``RoI bins x feature positions``, 16 entries per bin for a 2x2 sampling
  grid); the feature gradient is ``A^T @ grad`` with channels last, one
  multi-threaded sparse-dense product. Only the summation order differs from
  the kernel's (about 1e-7 relative).
"""
import os
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional, Sequence, Tuple

import torch
import torchvision  # noqa: F401  (registers torch.ops.torchvision)
from mmcv.ops import RoIAlign
from torch import Tensor

from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor
from mmdet_sparse.registry import MODELS

_POOL: Optional[ThreadPoolExecutor] = None
_POOL_PID: Optional[int] = None


def _pool(workers: int) -> ThreadPoolExecutor:
    """A process-wide pool (re-created after a fork)."""
    global _POOL, _POOL_PID
    if _POOL is None or _POOL_PID != os.getpid() or \
            _POOL._max_workers != workers:
        _POOL = ThreadPoolExecutor(workers, thread_name_prefix='roi_align')
        _POOL_PID = os.getpid()
    return _POOL


def _tasks(level_rois: Sequence[Tuple[Tensor, Tensor]], num_channels: int,
           num_blocks: int) -> List[tuple]:
    """``(level, image, channel slice, output rows, image rois)`` tasks.

    Args:
        level_rois: per level ``(rows, rois)``: indices into the output and
            the ``(n, 5)`` RoIs of that level.
        num_channels (int): Channels of the features.
        num_blocks (int): Channel blocks per (level, image).
    """
    step = -(-num_channels // num_blocks)
    tasks = []
    for level, (rows, rois) in enumerate(level_rois):
        if rows.numel() == 0:
            continue
        img_ids = rois[:, 0].long()
        for img in torch.unique(img_ids).tolist():
            keep = img_ids == img
            img_rois = rois[keep].clone()
            img_rois[:, 0] = 0
            for start in range(0, num_channels, step):
                tasks.append((level, img, slice(start, start + step),
                              rows[keep], img_rois))
    return tasks


def _axis_samples(start: Tensor, length: Tensor, bins: int, grid: int,
                  size: int) -> Tuple[Tensor, Tensor, Tensor]:
    """Bilinear taps along one axis, as RoIAlign's kernel computes them.

    Args:
        start, length (Tensor): ``(n,)`` RoI start and length in feature
            pixels.
        bins (int): Output bins along the axis.
        grid (int): Samples per bin along the axis.
        size (int): Feature size along the axis.

    Returns:
        tuple[Tensor]: indices ``(n, bins, grid, 2)`` (low, high), weights
        ``(n, bins, grid, 2)`` and in-range mask ``(n, bins, grid)``.
    """
    bin_len = (length / bins)[:, None, None]
    offsets = torch.arange(bins, dtype=start.dtype, device=start.device)
    sub = torch.arange(grid, dtype=start.dtype, device=start.device) + 0.5
    pos = start[:, None, None] + offsets[None, :, None] * bin_len + \
        sub[None, None, :] * bin_len / grid
    inside = (pos >= -1.0) & (pos <= size)
    pos = pos.clamp(min=0)
    low = pos.floor().long()
    at_edge = low >= size - 1
    low = torch.where(at_edge, torch.full_like(low, size - 1), low)
    high = torch.where(at_edge, low, low + 1)
    frac = torch.where(at_edge, torch.zeros_like(pos), pos - low)
    return (torch.stack([low, high], -1), torch.stack([1 - frac, frac], -1),
            inside)


def _sampling_entries(rows: Tensor, rois: Tensor, scale: float, shape,
                      out_size: Tuple[int, int], sampling_ratio: int,
                      aligned: bool,
                      start: int) -> Tuple[Tensor, Tensor, Tensor]:
    """Non-zeros ``(position, bin, weight)`` of one level's sampling matrix.

    A bin's value is the mean over its ``g x g`` samples of the bilinear
    interpolation of 4 feature positions: ``16`` entries per bin for
    ``g = 2``. Positions index ``(image, y, x)`` of the level, offset by
    ``start``; bins index ``(RoI row, bin y, bin x)``.
    """
    _, _, height, width = shape
    grid = sampling_ratio
    offset = 0.5 if aligned else 0.0
    boxes = rois[:, 1:] * scale - offset  # float32, as the kernel
    lengths = boxes[:, 2:] - boxes[:, :2]
    if not aligned:
        lengths = lengths.clamp(min=1.0)
    ph, pw = out_size
    y_idx, y_w, y_in = _axis_samples(boxes[:, 1], lengths[:, 1], ph, grid,
                                     height)
    x_idx, x_w, x_in = _axis_samples(boxes[:, 0], lengths[:, 0], pw, grid,
                                     width)
    # Broadcast to (n, ph, gy, 2, pw, gx, 2).
    y_idx, y_w = y_idx[:, :, :, :, None, None, None], y_w[..., None, None,
                                                          None]
    x_idx, x_w = x_idx[:, None, None, None], x_w[:, None, None, None]
    inside = y_in[:, :, :, None, None, None, None] & \
        x_in[:, None, None, None, :, :, None]
    weight = y_w * x_w * inside / (grid * grid)
    image = rois[:, 0].long()[:, None, None, None, None, None, None]
    position = start + (image * height + y_idx) * width + x_idx
    n = rois.size(0)
    bin_y = torch.arange(ph, device=rois.device)[None, :, None, None, None,
                                                  None, None]
    bin_x = torch.arange(pw, device=rois.device)[None, None, None, None, :,
                                                  None, None]
    bins = (rows[:, None, None, None, None, None, None] * ph + bin_y) * pw \
        + bin_x
    full = (n, ph, grid, 2, pw, grid, 2)
    return (position.expand(full).reshape(-1), bins.expand(full).reshape(-1),
            weight.expand(full).reshape(-1))


class _ThreadedRoIAlign(torch.autograd.Function):
    """RoIAlign over pyramid levels on a thread pool (CPU)."""

    @staticmethod
    def forward(ctx, level_rois, params, workers, *feats):
        out_size, scales, sampling_ratio, aligned = params
        num_rois = sum(rows.numel() for rows, _ in level_rois)
        channels = feats[0].size(1)
        tasks = _tasks(level_rois, channels, workers)

        @torch.no_grad()  # grad mode is per thread
        def run(task):
            level, img, chans, _, rois = task
            return torch.ops.torchvision.roi_align(
                feats[level][img:img + 1, chans], rois, scales[level],
                out_size[0], out_size[1], sampling_ratio, aligned)

        out = feats[0].new_empty((num_rois, channels, *out_size))
        for task, res in zip(tasks, _pool(workers).map(run, tasks)):
            out[task[3], task[2]] = res
        ctx.level_rois, ctx.params = level_rois, params
        ctx.shapes = [f.shape for f in feats]
        return out

    @staticmethod
    def backward(ctx, grad_out):
        out_size, scales, sampling_ratio, aligned = ctx.params
        num_bins = out_size[0] * out_size[1]
        channels = grad_out.size(1)
        # (RoI bin, channel) rows; positions of all levels stacked.
        grad_bins = grad_out.permute(0, 2, 3, 1).reshape(-1, channels)
        level_sizes = [s[0] * s[2] * s[3] for s in ctx.shapes]
        starts = [0]
        for size in level_sizes[:-1]:
            starts.append(starts[-1] + size)
        entries = [
            _sampling_entries(rows, rois, scales[level], ctx.shapes[level],
                              out_size, sampling_ratio, aligned, start)
            for level, ((rows, rois), start) in enumerate(
                zip(ctx.level_rois, starts)) if rows.numel()
        ]
        positions = torch.cat([e[0] for e in entries])
        bins = torch.cat([e[1] for e in entries])
        weights = torch.cat([e[2] for e in entries]).to(grad_bins.dtype)
        matrix_t = torch.sparse_coo_tensor(
            torch.stack([positions, bins]), weights,
            (sum(level_sizes), grad_out.size(0) * num_bins)).coalesce()
        grad_all = torch.sparse.mm(matrix_t.to_sparse_csr(), grad_bins)
        # Channels-last views; unused levels get zeros, which keeps every
        # level in the graph (distributed training needs the same graph).
        grads = []
        for start, size, shape in zip(starts, level_sizes, ctx.shapes):
            batch, _, height, width = shape
            grads.append(grad_all[start:start + size].view(
                batch, height, width, channels).permute(0, 3, 1, 2))
        return (None, None, None, *grads)


@MODELS.register_module()
class ThreadedRoIExtractor(SingleRoIExtractor):
    """:class:`mmdet.models.SingleRoIExtractor` with multi-threaded CPU
    RoIAlign.

    Same config, level mapping and values as ``SingleRoIExtractor`` with
    mmcv's ``RoIAlign`` (``pool_mode='avg'``, fixed ``sampling_ratio``). On
    CUDA tensors, with another RoI layer or adaptive sampling, with
    ``roi_scale_factor`` or with one thread it simply calls the parent.

    Args:
        num_threads (int, optional): Worker threads; defaults to
            ``torch.get_num_threads()``.
        **kwargs: :class:`SingleRoIExtractor` arguments.
    """

    def __init__(self, *args, num_threads: Optional[int] = None,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.num_threads = num_threads
        layer = self.roi_layers[0]
        self._threadable = all(
            isinstance(m, RoIAlign) and m.pool_mode == 'avg'
            and m.sampling_ratio > 0 for m in self.roi_layers)
        if self._threadable:
            self._params = (tuple(layer.output_size),
                            tuple(m.spatial_scale for m in self.roi_layers),
                            layer.sampling_ratio, layer.aligned)

    def forward(self,
                feats: Tuple[Tensor],
                rois: Tensor,
                roi_scale_factor: Optional[float] = None) -> Tensor:
        """RoI features ``(n, C, S, S)`` of RoIs ``(n, 5)`` (image index
        then ``x1, y1, x2, y2``) from the pyramid ``feats``."""
        workers = self.num_threads or torch.get_num_threads()
        feats = tuple(feats[:self.num_inputs])
        if (not self._threadable or workers < 2 or feats[0].is_cuda
                or roi_scale_factor is not None
                or torch.jit.is_tracing() or len(feats) == 1):
            return super().forward(feats, rois, roi_scale_factor)
        rois = rois.type_as(feats[0])
        levels = self.map_roi_levels(rois, len(feats))
        level_rois = []
        for level in range(len(feats)):
            rows = (levels == level).nonzero(as_tuple=False).squeeze(1)
            level_rois.append((rows, rois[rows]))
        feats = tuple(f.contiguous() for f in feats)
        return _ThreadedRoIAlign.apply(level_rois, self._params, workers,
                                       *feats)
