"""Multi-level RoIAlign that uses every CPU core.

The CPU kernels of RoIAlign (mmcv's and torchvision's, which compute the
same values bit for bit) run on one thread. In the forward pass this
extractor splits the work into independent (pyramid level, image, channel
block) tasks and runs torchvision's kernel on a thread pool (it releases the
GIL); every task writes a disjoint block in the kernel's own order, so the
pooled features are bit-identical to one single-threaded call. The backward
pass computes the feature gradient with batched matrix products
(:mod:`.separable_roi_align`), whose cost grows with a RoI's window on the
map, except where torchvision's kernel on the same parallel tasks is
cheaper (:func:`_to_kernel`); both equal the single-threaded kernel's up to
float rounding.
"""
import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional, Sequence, Tuple

import torch
import torchvision  # noqa: F401  (registers torch.ops.torchvision)
from mmcv.ops import RoIAlign
from mmengine.logging import print_log
from torch import Tensor

from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor
from mmdet_sparse.registry import MODELS
from .export_roi_align import export_roi_align, is_exporting
from .separable_roi_align import roi_align_feature_grad, window_area

# None: route RoIs by the cost model of ``_to_kernel``. An int: RoIs whose
# gradient window (feature pixels) is larger go to the sampling kernel
# (tests use it to force either path).
MAX_SEPARABLE_WINDOW: Optional[int] = None

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


def _tasks(level_rois: Sequence[Tuple[int, Tensor, Tensor]],
           num_channels: int,
           num_blocks: int) -> List[tuple]:
    """``(level, image, channel slice, output rows, image rois)`` tasks.

    Args:
        level_rois: ``(level, rows, rois)``: a level, indices into the
            output and the ``(n, 5)`` RoIs of that level.
        num_channels (int): Channels of the features.
        num_blocks (int): Channel blocks per (level, image).
    """
    step = -(-num_channels // num_blocks)
    tasks = []
    for level, rows, rois in level_rois:
        if rows.numel() == 0:
            continue
        img_ids = rois[:, 0].long()
        for img in torch.unique(img_ids).tolist():
            keep = img_ids == img
            img_rois = rois[keep].clone()
            img_rois[:, 0] = 0
            img_rows = rows[keep]
            for start in range(0, num_channels, step):
                tasks.append((level, img, slice(start, start + step),
                              img_rows, img_rois))
    return tasks


def _to_kernel(area: Tensor, img_ids: Tensor, map_pixels: int,
               samples_per_roi: int, workers: int) -> Tensor:
    """Which RoIs of one level get their gradient from the sampling kernel.

    Per channel, the separable gradient of a RoI costs about its window
    area (one add per window pixel) and the kernel ``4 * samples /
    workers`` (four bilinear corners per sample, on the pool), plus, once
    per image it runs on, a zeroed and copied map. RoIs whose window costs
    more than the kernel go to it when together they save more than those
    maps cost: e.g. whole-image RoIs on the coarsest level (every proposal
    at the start of training) do, a few mid-sized RoIs on the finest level
    do not.

    Args:
        area (Tensor): ``(n,)`` window bound of each RoI
            (:func:`window_area`).
        img_ids (Tensor): ``(n,)`` image of each RoI.
        map_pixels (int): Pixels of the level's map (one image).
        samples_per_roi (int): Sample points per RoI (bins times samples
            per bin).
        workers (int): Threads of the pool.

    Returns:
        Tensor: ``(n,)`` bool.
    """
    if MAX_SEPARABLE_WINDOW is not None:
        return area > MAX_SEPARABLE_WINDOW
    per_roi = 4 * samples_per_roi / workers
    costly = area > per_roi
    if not bool(costly.any()):
        return costly
    saved = float((area[costly] - per_roi).sum())
    maps = torch.unique(img_ids[costly]).numel() * map_pixels
    return costly if saved > maps else torch.zeros_like(costly)


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype RoIs are mapped and pooled in: float32 for the 16-bit
    float types, else ``dtype`` (float32, float64)."""
    return torch.float32 if dtype in (torch.float16,
                                      torch.bfloat16) else dtype


_WARNED_SINGLE_THREAD = False


def _warn_single_thread() -> None:
    """Say once per process that RoIAlign runs on one CPU thread."""
    global _WARNED_SINGLE_THREAD
    if not _WARNED_SINGLE_THREAD:
        _WARNED_SINGLE_THREAD = True
        print_log(
            'ThreadedRoIExtractor: torch uses 1 thread '
            f'(OMP_NUM_THREADS={os.environ.get("OMP_NUM_THREADS")}), so '
            'RoIAlign runs single-threaded on the CPU; set OMP_NUM_THREADS '
            'to the cores per process (tools/dist_train.sh does) or '
            'num_threads in the extractor config.',
            logger='current', level=logging.WARNING)


class _ThreadedRoIAlign(torch.autograd.Function):
    """RoIAlign over pyramid levels on a thread pool (CPU)."""

    @staticmethod
    def forward(ctx, level_rois, params, workers, *feats):
        out_size, scales, sampling_ratio, aligned = params
        num_rois = sum(rows.numel() for rows, _ in level_rois)
        channels = feats[0].size(1)
        tasks = _tasks([(level, rows, rois)
                        for level, (rows, rois) in enumerate(level_rois)],
                       channels, workers)

        @torch.no_grad()  # grad mode is per thread
        def run(task):
            level, img, chans, _, rois = task
            return torch.ops.torchvision.roi_align(
                feats[level][img:img + 1, chans], rois, scales[level],
                out_size[0], out_size[1], sampling_ratio, aligned)

        out = feats[0].new_empty((num_rois, channels, *out_size))
        # Channel blocks of one (level, image) are consecutive tasks: join
        # them, then copy whole rows (cheaper than strided block writes).
        blocks, rows = [], None
        for task, res in zip(tasks, _pool(workers).map(run, tasks)):
            if rows is not None and task[3] is not rows:
                out.index_copy_(0, rows, torch.cat(blocks, 1))
                blocks = []
            blocks.append(res)
            rows = task[3]
        if rows is not None:
            out.index_copy_(0, rows, torch.cat(blocks, 1))
        ctx.level_rois, ctx.params, ctx.workers = level_rois, params, workers
        ctx.shapes = [f.shape for f in feats]
        return out

    @staticmethod
    def backward(ctx, grad_out):
        out_size, scales, sampling_ratio, aligned = ctx.params
        grad_out = grad_out.contiguous()
        channels = grad_out.size(1)
        grads, tasks = [None] * len(ctx.shapes), []
        samples = out_size[0] * out_size[1] * sampling_ratio**2
        for level, (rows, rois) in enumerate(ctx.level_rois):
            _, _, height, width = ctx.shapes[level]
            small = ~_to_kernel(
                window_area(rois, scales[level], aligned, height, width),
                rois[:, 0], height * width, samples, ctx.workers)
            if bool(small.any()):
                grads[level] = roi_align_feature_grad(
                    grad_out[rows[small]], rois[small], ctx.shapes[level],
                    scales[level], sampling_ratio, aligned)
            if not bool(small.all()):
                large = ~small
                tasks += _tasks([(level, rows[large], rois[large])],
                                channels, ctx.workers)

        @torch.no_grad()
        def run(task):
            level, _, chans, rows, rois = task
            grad = grad_out[rows, chans]
            _, _, height, width = ctx.shapes[level]
            return torch.ops.torchvision._roi_align_backward(
                grad, rois, scales[level], out_size[0], out_size[1], 1,
                grad.size(1), height, width, sampling_ratio, aligned)

        # RoIs with large windows: the sampling kernel, on the pool. Where
        # a level has no separable part its gradient is written block by
        # block, else added to it.
        written = set()
        fresh = {task[0] for task in tasks if grads[task[0]] is None}
        for level in fresh:
            grads[level] = grad_out.new_empty(ctx.shapes[level])
        for start in range(0, len(tasks), ctx.workers):
            wave = tasks[start:start + ctx.workers]
            for (level, img, chans, _, _), grad in zip(
                    wave, _pool(ctx.workers).map(run, wave)):
                if level in fresh:
                    grads[level][img, chans] = grad[0]
                    written.add((level, img))
                else:
                    grads[level][img, chans] += grad[0]
        # Images without RoIs on a level the kernel wrote get zeros; levels
        # without RoIs get none at all (``None``), which spares a zero-filled
        # map per level and stage. Callers that need every level in the
        # graph (distributed training) connect the unused ones once, as
        # ``SparseRoIHead.loss`` does.
        for level in fresh:
            for img in range(ctx.shapes[level][0]):
                if (level, img) not in written:
                    grads[level][img].zero_()
        return (None, None, None, *grads)


@MODELS.register_module()
class ThreadedRoIExtractor(SingleRoIExtractor):
    """:class:`mmdet.models.SingleRoIExtractor` with multi-threaded CPU
    RoIAlign.

    Same config, level mapping and values as ``SingleRoIExtractor`` with
    mmcv's ``RoIAlign`` (``pool_mode='avg'``, fixed ``sampling_ratio``).
    One difference in the graph: a level without RoIs gets no gradient
    (``SingleRoIExtractor`` adds a zero term per level instead). On
    tensors of another device (CUDA, MPS, ...), with another RoI layer or
    adaptive sampling, with ``roi_scale_factor`` or with one thread it
    calls the parent.

    One difference in precision, on every path: float16/bfloat16 features
    (AMP) are pooled in float32 with float32 RoIs, and the output is cast
    back. The RoIs' levels and sampling points are then those of a float32
    run; ``SingleRoIExtractor`` casts the RoIs to float16, where a
    300x300 box's area (90000 > 65504) overflows and maps to another level.
    The float32 copy of a level lives only during the RoIAlign call.

    Args:
        num_threads (int, optional): Worker threads; defaults to
            ``torch.get_num_threads()``.
        level_rule (str): Pyramid level of a RoI of scale
            ``s = sqrt(w * h)``. ``'mmdet'`` (default):
            ``floor(log2(s / finest_scale + 1e-6))``. ``'detectron2'``: the
            authors' (detectron2's) ``floor(4 + log2(s / 224 + 1e-8)) -
            log2(featmap_strides[0])``, computed in their order (224 is
            ``finest_scale * 2 ** (4 - log2(featmap_strides[0]))``). The two
            differ only for scales a few ulps below a level boundary
            (``112``, ``224``, ``448`` px with the defaults).
        **kwargs: :class:`SingleRoIExtractor` arguments.
    """

    def __init__(self, *args, num_threads: Optional[int] = None,
                 level_rule: str = 'mmdet', **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if level_rule not in ('mmdet', 'detectron2'):
            raise ValueError("ThreadedRoIExtractor level_rule must be "
                             f"'mmdet' or 'detectron2', got {level_rule!r}")
        self.level_rule = level_rule
        self.num_threads = num_threads
        layer = self.roi_layers[0]
        self._threadable = all(
            isinstance(m, RoIAlign) and m.pool_mode == 'avg'
            and m.sampling_ratio > 0 for m in self.roi_layers)
        if self._threadable:
            self._params = (tuple(layer.output_size),
                            tuple(m.spatial_scale for m in self.roi_layers),
                            layer.sampling_ratio, layer.aligned)

    def map_roi_levels(self, rois: Tensor, num_levels: int) -> Tensor:
        """Level index ``(n,)`` (long) of each RoI ``(n, 5)`` by
        ``level_rule``, computed in at least float32 (a box area above
        65504 px² overflows float16)."""
        rois = rois.to(_work_dtype(rois.dtype))
        if self.level_rule == 'mmdet':
            return super().map_roi_levels(rois, num_levels)
        min_level = math.log2(self.featmap_strides[0])
        if min_level != int(min_level):
            raise ValueError("level_rule='detectron2' needs a power-of-two "
                             f'first stride, got {self.featmap_strides}')
        min_level = int(min_level)
        canonical_level = 4
        canonical_size = self.finest_scale * 2**(canonical_level - min_level)
        scale = torch.sqrt(
            (rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2]))
        levels = torch.floor(canonical_level +
                             torch.log2(scale / canonical_size + 1e-8))
        levels = levels.clamp(min=min_level, max=min_level + num_levels - 1)
        return levels.long() - min_level

    def forward(self,
                feats: Tuple[Tensor],
                rois: Tensor,
                roi_scale_factor: Optional[float] = None) -> Tensor:
        """RoI features ``(n, C, S, S)`` of RoIs ``(n, 5)`` (image index
        then ``x1, y1, x2, y2``) from the pyramid ``feats``."""
        workers = self.num_threads or torch.get_num_threads()
        feats = tuple(feats[:self.num_inputs])
        if is_exporting():
            return self.export_forward(feats, rois, roi_scale_factor)
        # Reduced-precision features (fp16 AMP) are pooled in float32, with
        # float32 RoIs: the level of a RoI and its sampling points are those
        # of a float32 run (``SingleRoIExtractor`` would cast the RoIs to
        # float16, where areas above 65504 px² overflow to another level
        # and coordinates above 512 px round to 0.5-1 px).
        out_dtype = feats[0].dtype
        work = _work_dtype(out_dtype)
        if work != out_dtype:
            feats = tuple(f.to(work) for f in feats)
        rois = rois.to(work)
        if (not self._threadable or workers < 2
                or feats[0].device.type != 'cpu'
                or roi_scale_factor is not None or len(feats) == 1):
            if (workers < 2 and self.num_threads is None
                    and feats[0].device.type == 'cpu'):
                _warn_single_thread()
            return super().forward(feats, rois,
                                   roi_scale_factor).to(out_dtype)
        levels = self.map_roi_levels(rois, len(feats))
        level_rois = []
        for level in range(len(feats)):
            rows = (levels == level).nonzero(as_tuple=False).squeeze(1)
            level_rois.append((rows, rois[rows]))
        feats = tuple(f.contiguous() for f in feats)
        return _ThreadedRoIAlign.apply(level_rois, self._params, workers,
                                       *feats).to(out_dtype)

    def export_forward(self,
                       feats: Tuple[Tensor],
                       rois: Tensor,
                       roi_scale_factor: Optional[float] = None) -> Tensor:
        """The forward values as a graph ``torch.export`` can capture:
        torchvision's ``roi_align`` per level (ONNX ``RoiAlign``).

        Raises:
            NotImplementedError: RoI layers other than mmcv's average
                ``RoIAlign``, or ``roi_scale_factor``, naming the layer.
        """
        for layer in self.roi_layers:
            if not isinstance(layer, RoIAlign) or layer.pool_mode != 'avg':
                raise NotImplementedError(
                    f'{type(self).__name__} exports mmcv RoIAlign with '
                    f"pool_mode='avg' only, got {layer!r}")
        if roi_scale_factor is not None:
            raise NotImplementedError(
                f'{type(self).__name__} export: roi_scale_factor is not '
                'supported')
        layer = self.roi_layers[0]
        levels = self.map_roi_levels(rois, len(feats))
        return export_roi_align(
            feats, rois.type_as(feats[0]), levels, tuple(layer.output_size),
            [m.spatial_scale for m in self.roi_layers], layer.sampling_ratio,
            layer.aligned)
