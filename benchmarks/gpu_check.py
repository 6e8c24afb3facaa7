"""One command that checks this package's GPU path, in at most 10 minutes
on one GPU.

    python benchmarks/gpu_check.py --device cuda         # every row
    python benchmarks/gpu_check.py --device cpu          # what a CPU checks
    python benchmarks/gpu_check.py --rows parity fps     # a subset of rows
    python benchmarks/gpu_check.py --rows amp --configs all   # + ablations

Rows (see docs/gpu.md):

1. ``mmcv_ops``: mmcv's compiled CUDA version; a tiny forward + backward of
   each mmcv op the configs use (RoIAlign, sigmoid focal loss,
   ModulatedDeformConv2d, MultiScaleDeformableAttention) against a PyTorch
   or torchvision reference.
2. ``parity``: this package's heads against MMDetection's on the device, with
   the same weights, features and ground truth: losses per key, every
   parameter gradient, the feature gradients and the predictions (relative
   difference ``max|a - b| / max|b|`` at most 1e-4).
3. ``amp``: per zoo config, the RoI extractor's pyramid levels of boxes up to
   1333 px with float16 features against float32, and one float16
   ``AmpOptimWrapper`` training step (finite losses, same stage-1 levels as
   a float32 forward).
4. ``resume``: 4 iterations of the shapes demo with an iteration checkpoint
   at 2, then iterations 3-4 again in a fresh Runner resumed from it; the
   losses must match the uninterrupted run's.
5. ``ddp``: one 2-process DistributedDataParallel step (NCCL), gradients and
   updated weights equal across the ranks.
6. ``fps``: whole-model inference speed at 800x1333 next to MMDetection's
   ``SparseRCNN`` with the same weights (float32, and float16 autocast).

Each row is ok, FAIL or skipped (with the reason); a failing row never stops
the others, and its exception is recorded. The table is printed and
written, with the versions and the device, to ``--out`` (JSON); the exit
status is 1 when any row failed.
"""
import argparse
import contextlib
import copy
import dataclasses
import datetime
import glob
import itertools
import json
import math
import os
import os.path as osp
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
import warnings
from typing import (Any, Callable, Dict, Iterator, List, Optional, Sequence,
                    Tuple)

import torch

BENCHMARKS = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(BENCHMARKS)
for _path in (REPO, BENCHMARKS):  # mmdet_sparse and head_speed
    if _path not in sys.path:
        sys.path.insert(0, _path)

CONFIGS = osp.join(REPO, 'configs')
DEMO_CONFIG = osp.join(CONFIGS, 'sparse_rcnn_r18_fpn_shapes_demo.py')
R50_CONFIG = osp.join(CONFIGS, 'sparse_rcnn_r50_fpn_1x_coco.py')
MMDET_R50_CONFIG = ('sparse_rcnn', 'sparse-rcnn_r50_fpn_1x_coco.py')

OK, FAIL, SKIPPED = 'ok', 'FAIL', 'skipped'
ROWS = ('mmcv_ops', 'parity', 'amp', 'resume', 'ddp', 'fps')
# Relative difference (max|a - b| / max|b|) allowed between this package's
# heads and MMDetection's on one device.
PARITY_TOL = 1e-4
# The same for an mmcv op against its reference implementation (float32;
# gradients of the deformable attention's sampling: 1e-3), and for a
# float16 forward against the float32 reference.
OP_TOL, OP_GRAD_TOL, FP16_TOL = 1e-4, 1e-3, 1e-2
# The Sparse R-CNN paper's speed (Sun et al., CVPR 2021): R50-FPN, 100
# proposals, one V100.
PAPER_FPS = 23.0

# Problem sizes: real R50-FPN shapes on CUDA, small ones on the CPU.
SIZES = {
    'cuda': dict(parity_img=(800, 1344), parity_proposals=100,
                 amp_img=(512, 640), resume_scale=256, fps_img=(800, 1333),
                 fps_warmup=10, fps_repeats=50, resume_tol=1e-3),
    'cpu': dict(parity_img=(256, 320), parity_proposals=20,
                amp_img=(128, 160), resume_scale=128, fps_img=(800, 1333),
                fps_warmup=1, fps_repeats=3, resume_tol=0.0),
}


# ------------------------------------------------------------ results ---
@dataclasses.dataclass
class Check:
    """One row of the table, or one part of a row."""

    name: str
    status: str = OK
    detail: str = ''
    numbers: Dict[str, Any] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0
    error: Optional[str] = None
    parts: List['Check'] = dataclasses.field(default_factory=list)

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        out['parts'] = [p.to_json() for p in self.parts]
        return out


class Skipped(Exception):
    """The check does not apply on this machine; the message says why."""

    def __init__(self, reason: str, numbers: Optional[dict] = None) -> None:
        super().__init__(reason)
        self.numbers = numbers or {}


class Failed(Exception):
    """The check ran and its numbers are out of bounds."""

    def __init__(self, detail: str, numbers: Optional[dict] = None) -> None:
        super().__init__(detail)
        self.numbers = numbers or {}


Outcome = Tuple[str, Dict[str, Any]]


def run_check(name: str, fn: Callable[[], Outcome],
              progress: bool = True) -> Check:
    """Run ``fn`` (returns ``(detail, numbers)``) as one check; a skip, a
    failure or any exception is recorded in the returned check. Prints a
    progress line unless ``progress`` is False."""
    check = Check(name)
    start = time.perf_counter()
    try:
        check.detail, check.numbers = fn()
    except Skipped as exc:
        check.status, check.detail, check.numbers = \
            SKIPPED, str(exc), exc.numbers
    except Failed as exc:
        check.status, check.detail, check.numbers = \
            FAIL, str(exc), exc.numbers
    except Exception as exc:  # noqa: BLE001 - recorded, never swallowed
        check.status = FAIL
        check.detail = f'{type(exc).__name__}: {exc}'.strip()
        check.error = traceback.format_exc()
    check.seconds = time.perf_counter() - start
    if progress:
        print(f'  [{check.status}] {name} ({check.seconds:.1f} s)',
              flush=True)
    return check


def summarize(row: Check) -> Check:
    """Set a row's status and detail from its parts."""
    statuses = [p.status for p in row.parts]
    if FAIL in statuses:
        row.status = FAIL
    elif statuses and all(s == SKIPPED for s in statuses):
        row.status = SKIPPED
    else:
        row.status = OK
    counts = {s: statuses.count(s) for s in (OK, FAIL, SKIPPED)}
    row.detail = ', '.join(f'{n} {s}' for s, n in counts.items() if n)
    return row


def run_row(name: str, fn: Callable[['Context'], Any],
            ctx: 'Context') -> Check:
    """Run a row function: it returns ``(detail, numbers)`` for a row of
    one check, or a list of part checks."""
    start = time.perf_counter()
    parts: List[Check] = []

    def outcome() -> Outcome:
        result = fn(ctx)
        if isinstance(result, list):
            parts.extend(result)
            return '', {}
        return result

    row = run_check(name, outcome, progress=False)
    if parts:
        row.parts = parts
        summarize(row)
    row.seconds = time.perf_counter() - start
    if ctx.cuda:
        torch.cuda.empty_cache()
    return row


# ------------------------------------------------------------ context ---
@dataclasses.dataclass
class Context:
    """What the rows need: the device, the options and a scratch folder."""

    device: torch.device
    tmp: str
    configs: Optional[List[str]] = None
    fps_on_cpu: bool = False
    ddp_on_cpu: bool = False

    @property
    def cuda(self) -> bool:
        return self.device.type == 'cuda'

    @property
    def sizes(self) -> dict:
        return SIZES['cuda' if self.cuda else 'cpu']


def max_rel_diff(a: Optional[torch.Tensor],
                 b: Optional[torch.Tensor]) -> float:
    """``max|a - b| / max|b|`` (0 for two empty tensors); ``None`` counts
    as zeros of the other's shape (a level without RoIs: no gradient in
    one implementation, a zero gradient in the other)."""
    if a is None and b is None:
        return 0.0
    a = torch.zeros_like(b) if a is None else a
    b = torch.zeros_like(a) if b is None else b
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    if a.shape != b.shape:
        return math.inf
    if b.numel() == 0:
        return 0.0
    scale = b.abs().max().item()
    diff = (a - b).abs().max().item()
    return diff / scale if scale > 0 else diff


def synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def mmdet_config_path(folder: str, name: str) -> str:
    """A config bundled with MMDetection (``mmdet/.mim/configs``)."""
    import mmdet
    return osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs', folder,
                    name)


# -------------------------------------------------------------- models ---
def random_weights(model_cfg: dict) -> dict:
    """``model_cfg`` with its backbone's pretrained weights dropped: no
    local checkpoint is read and nothing is downloaded."""
    backbone = model_cfg['backbone']
    init_cfg = backbone.get('init_cfg')
    if isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained':
        backbone['init_cfg'] = None
    if backbone.get('type') == 'TimmBackbone':
        backbone['pretrained'] = False
        backbone['checkpoint_path'] = None
    elif backbone.get('pretrained') is not None:
        backbone['pretrained'] = None
    return model_cfg


def build_detector(cfg_path: str, device: torch.device,
                   scope: str = 'mmdet_sparse', seed: int = 0):
    """``(model, cfg)``: the config's detector with random weights
    (``init_weights()`` after ``torch.manual_seed(seed)``, no pretrained
    backbone), SyncBN as BN, on ``device``, in train mode.
    ``scope='mmdet'`` builds from MMDetection's registry (for its own
    configs)."""
    from mmdet.registry import MODELS as MMDET_MODELS
    from mmengine.config import Config
    from mmengine.model import revert_sync_batchnorm

    from mmdet_sparse.registry import MODELS
    cfg = Config.fromfile(cfg_path)
    model_cfg = random_weights(copy.deepcopy(cfg.model))
    model_cfg['_scope_'] = scope
    registry = MODELS if scope == 'mmdet_sparse' else MMDET_MODELS
    torch.manual_seed(seed)
    model = revert_sync_batchnorm(registry.build(model_cfg))
    model.init_weights()
    return model.to(device).train(), cfg


def head_configs(roi_head: dict, key: str) -> List[dict]:
    """The per-stage head configs (``bbox_head``/``mask_head``) of a RoI
    head config, a list whether the config gives one dict or a list."""
    heads = roi_head.get(key)
    if heads is None:
        return []
    return list(heads) if isinstance(heads, (list, tuple)) else [heads]


def random_boxes(gen: torch.Generator, num: int, h: int,
                 w: int) -> torch.Tensor:
    """``(num, 4)`` random boxes inside an ``h x w`` image, 5-55 % of its
    sides."""
    size = torch.tensor([w, h])
    xy = torch.rand(num, 2, generator=gen) * size * .7
    wh = (torch.rand(num, 2, generator=gen) * .5 + .05) * size
    return torch.cat([xy, torch.minimum(xy + wh, size - 1.)], 1)


def random_batch(model_cfg: dict, num_images: int, img_size: Tuple[int, int],
                 seed: int = 0) -> dict:
    """A training batch as a data loader gives it: uint8 images
    ``(3, H, W)`` and ``DetDataSample``s with 1-8 random boxes each (and
    elliptic masks when the model has a mask head)."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    from head_speed import ellipse_masks
    gen = torch.Generator().manual_seed(seed)
    h, w = img_size
    roi_head = model_cfg['roi_head']
    num_classes = head_configs(roi_head, 'bbox_head')[0]['num_classes']
    inputs, samples = [], []
    for i in range(num_images):
        inputs.append(torch.randint(0, 256, (3, h, w), generator=gen,
                                    dtype=torch.uint8))
        boxes = random_boxes(gen, int(torch.randint(1, 9, (1, ),
                                                    generator=gen)), h, w)
        sample = DetDataSample(metainfo=dict(
            img_id=i, img_path=f'random_{i}.jpg', ori_shape=(h, w),
            img_shape=(h, w), scale_factor=(1.0, 1.0), flip=False,
            flip_direction=None))
        sample.gt_instances = InstanceData(
            bboxes=boxes, labels=torch.randint(0, num_classes, (len(boxes), ),
                                               generator=gen))
        if head_configs(roi_head, 'mask_head'):
            sample.gt_instances.masks = ellipse_masks(boxes, h, w)
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


class _LevelsRecorded(Exception):
    """Raised by :func:`recorded_levels` to stop a forward after the
    level mapping (before RoIAlign)."""


@contextlib.contextmanager
def recorded_levels(extractor: torch.nn.Module,
                    stop: bool = False) -> Iterator[List[dict]]:
    """Record the pyramid levels the RoI extractor assigns in its
    forward (``map_roi_levels`` as the forward calls it, with the RoIs in
    the dtype the forward gives them: MMDetection's casts them to the
    features' dtype): a list of ``{'levels', 'dtype'}`` per call.
    ``stop``: raise :class:`_LevelsRecorded` right after the first
    mapping, so that no RoIAlign kernel runs (the CPU one has no float16
    version)."""
    calls: List[dict] = []
    original = extractor.map_roi_levels

    def record(rois: torch.Tensor, num_levels: int) -> torch.Tensor:
        levels = original(rois, num_levels)
        calls.append(dict(levels=levels.detach().cpu(),
                          dtype=str(rois.dtype).replace('torch.', '')))
        if stop:
            raise _LevelsRecorded
        return levels

    extractor.map_roi_levels = record
    try:
        yield calls
    finally:
        del extractor.map_roi_levels  # the class's method again


def level_test_rois(num: int = 2000, img: Tuple[int, int] = (800, 1333),
                    seed: int = 0) -> torch.Tensor:
    """RoIs ``(n, 5)`` (float32) inside an ``img`` image: ``num`` of
    log-uniform scale ``sqrt(w * h)`` from 4 px to the image's longer side
    and aspect ratio 1/3 to 3, plus boxes within 1 % of the level
    boundaries (112, 224, 448 px) placed far from the origin, where float16
    rounds coordinates to 0.5-1 px."""
    gen = torch.Generator().manual_seed(seed)
    h, w = img

    def uniform(n: int, lo: float, hi: float) -> torch.Tensor:
        return torch.rand(n, generator=gen) * (hi - lo) + lo

    scale = torch.exp(uniform(num, math.log(4), math.log(max(h, w))))
    ratio = torch.exp(uniform(num, math.log(1 / 3), math.log(3)))
    bw = (scale * ratio.sqrt()).clamp(1, w)
    bh = (scale / ratio.sqrt()).clamp(1, h)
    x1 = torch.rand(num, generator=gen) * (w - bw)
    y1 = torch.rand(num, generator=gen) * (h - bh)
    boxes = [torch.stack([x1, y1, x1 + bw, y1 + bh], 1)]
    side = torch.tensor([112., 224., 448.]).repeat_interleave(64) * \
        uniform(192, 0.99, 1.01)
    x1 = uniform(192, 0, 1) * (w - side - 700) + 700
    y1 = uniform(192, 0, 1) * (h - side)
    boxes.append(torch.stack([x1, y1, x1 + side, y1 + side], 1))
    boxes = torch.cat(boxes)
    return torch.cat([boxes.new_zeros(len(boxes), 1), boxes], 1)


def compare_levels(ref: torch.Tensor, test: torch.Tensor,
                   rois: Optional[torch.Tensor] = None) -> Dict[str, Any]:
    """Numbers of a level comparison: RoIs, mismatches, mismatches per
    ``'ref->test'`` level pair and (given the RoIs) the range of their
    scales ``sqrt(w * h)`` in px."""
    differ = ref != test
    pairs: Dict[str, int] = {}
    for a, b in zip(ref[differ].tolist(), test[differ].tolist()):
        pairs[f'{a}->{b}'] = pairs.get(f'{a}->{b}', 0) + 1
    out: Dict[str, Any] = dict(rois=len(ref), mismatches=int(differ.sum()),
                               mismatch_levels=pairs)
    if differ.any() and rois is not None:
        rois = rois.detach().double().cpu()
        scale = ((rois[:, 3] - rois[:, 1]) *
                 (rois[:, 4] - rois[:, 2])).sqrt()
        bad = scale[differ]
        out['mismatch_scale_px'] = [round(bad.min().item(), 1),
                                    round(bad.max().item(), 1)]
    return out


def level_text(numbers: Dict[str, Any]) -> str:
    """``'k of n RoIs on another level (2->3: k; scales a-b px)'``."""
    if not numbers['mismatches']:
        return f"same level for all {numbers['rois']} RoIs"
    pairs = ', '.join(f'{k}: {v}' for k, v in
                      sorted(numbers['mismatch_levels'].items()))
    lo, hi = numbers['mismatch_scale_px']
    return (f"{numbers['mismatches']} of {numbers['rois']} RoIs on another "
            f"level (fp32->fp16 {pairs}; scales {lo}-{hi} px)")


# ------------------------------------------------------ row 1: mmcv ops ---
def row_mmcv_ops(ctx: Context) -> List[Check]:
    """mmcv's build and a forward + backward of each op the configs use."""
    dev = ctx.device
    return [
        run_check('compiled CUDA version', lambda: check_mmcv_build(ctx)),
        run_check('RoIAlign (all configs)', lambda: check_roi_align(dev)),
        run_check('sigmoid focal loss (FocalLoss on CUDA)',
                  lambda: check_focal_loss(dev)),
        run_check('ModulatedDeformConv2d (X-101-DCN config)',
                  lambda: check_dcn(dev)),
        run_check('MultiScaleDeformableAttention (ViT-Adapter)',
                  lambda: check_msda(dev)),
    ]


def check_mmcv_build(ctx: Context) -> Outcome:
    """mmcv's compiled CUDA version; on CUDA it must have been built with
    CUDA ops, for the CUDA major version torch runs."""
    from mmcv.ops import get_compiler_version, get_compiling_cuda_version
    cuda_version = get_compiling_cuda_version()
    numbers = dict(compiling_cuda_version=cuda_version,
                   compiler=get_compiler_version(),
                   torch_cuda_version=torch.version.cuda)
    detail = f'mmcv ops compiled with CUDA {cuda_version}, ' \
             f'{numbers["compiler"]}'
    if not ctx.cuda:
        return detail, numbers
    if cuda_version in ('not available', '', None):
        raise Failed('mmcv ops were built without CUDA: rebuild mmcv with '
                     'MMCV_WITH_OPS=1 FORCE_CUDA=1', numbers)
    if torch.version.cuda and \
            cuda_version.split('.')[0] != torch.version.cuda.split('.')[0]:
        raise Failed(f'mmcv built for CUDA {cuda_version}, torch runs CUDA '
                     f'{torch.version.cuda}: rebuild mmcv', numbers)
    return detail, numbers


def _backward(out: torch.Tensor, seed: int = 1) -> None:
    """Backward of a fixed random linear function of ``out``."""
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(out.shape, generator=gen).to(out)
    (out * weight).sum().backward()


def _leaf(t: torch.Tensor) -> torch.Tensor:
    """A fresh leaf copy of ``t`` that requires a gradient."""
    return t.detach().clone().requires_grad_()


def check_roi_align(device: torch.device) -> Outcome:
    """mmcv's RoIAlign (as the configs use it: 7x7, sampling ratio 2,
    aligned) against torchvision's, forward and backward; on CUDA also
    float16 (the AMP path) against float32."""
    from mmcv.ops import roi_align
    from torchvision.ops import roi_align as tv_roi_align
    gen = torch.Generator().manual_seed(0)
    feat = torch.randn(2, 16, 24, 32, generator=gen).to(device)
    xy = torch.rand(12, 2, generator=gen) * torch.tensor([100., 70.])
    wh = torch.rand(12, 2, generator=gen) * 40 + 2
    rois = torch.cat([torch.arange(12.)[:, None] % 2, xy, xy + wh],
                     1).to(device)
    ours, ref = _leaf(feat), _leaf(feat)
    out = roi_align(ours, rois, (7, 7), 0.25, 2, 'avg', True)
    expected = tv_roi_align(ref, rois, (7, 7), 0.25, 2, aligned=True)
    _backward(out)
    _backward(expected)
    numbers = dict(forward_rel=max_rel_diff(out, expected),
                   backward_rel=max_rel_diff(ours.grad, ref.grad))
    if device.type == 'cuda':
        half = roi_align(feat.half(), rois.half(), (7, 7), 0.25, 2, 'avg',
                         True)
        numbers['fp16_forward_rel'] = max_rel_diff(half.float(), expected)
    bounds = dict(forward_rel=OP_TOL, backward_rel=OP_TOL,
                  fp16_forward_rel=FP16_TOL)
    return _within(bounds, numbers, 'mmcv RoIAlign vs torchvision')


def _within(bounds: Dict[str, float], numbers: Dict[str, Any],
            what: str) -> Outcome:
    """``(detail, numbers)``, or :class:`Failed` naming each number over its
    bound."""
    over = [f'{k} {numbers[k]:.2e} > {b:.0e}' for k, b in bounds.items()
            if k in numbers and not numbers[k] <= b]
    text = ', '.join(f'{k} {numbers[k]:.1e}' for k in bounds if k in numbers)
    if over:
        raise Failed(f'{what}: ' + '; '.join(over), numbers)
    return f'{what}: {text}', numbers


def check_focal_loss(device: torch.device) -> Outcome:
    """mmcv's sigmoid focal loss (MMDetection's ``FocalLoss`` calls it on
    CUDA) against MMDetection's PyTorch version, loss and gradient."""
    if device.type != 'cuda':
        raise Skipped('mmcv has no CPU kernel; on the CPU mmdet FocalLoss '
                      'uses its PyTorch version (py_sigmoid_focal_loss)')
    import torch.nn.functional as F
    from mmcv.ops import sigmoid_focal_loss
    from mmdet.models.losses.focal_loss import py_sigmoid_focal_loss
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(40, 80, generator=gen).to(device)
    target = torch.randint(0, 81, (40, ), generator=gen).to(device)
    ours, ref = _leaf(logits), _leaf(logits)
    loss = sigmoid_focal_loss(ours, target, 2.0, 0.25, None, 'sum')
    one_hot = F.one_hot(target, 81)[:, :80].type_as(logits)
    expected = py_sigmoid_focal_loss(ref, one_hot, None, 2.0, 0.25, 'sum')
    loss.backward()
    expected.backward()
    numbers = dict(forward_rel=max_rel_diff(loss, expected),
                   backward_rel=max_rel_diff(ours.grad, ref.grad))
    return _within(dict(forward_rel=OP_TOL, backward_rel=OP_TOL), numbers,
                   'mmcv vs PyTorch focal loss')


def check_dcn(device: torch.device) -> Outcome:
    """mmcv's ``ModulatedDeformConv2dPack`` (``DCNv2`` in the configs)
    against torchvision's ``deform_conv2d`` with the same offsets and mask,
    forward and backward."""
    from mmcv.ops import ModulatedDeformConv2dPack
    from torchvision.ops import deform_conv2d
    torch.manual_seed(0)
    layer = ModulatedDeformConv2dPack(8, 8, 3, padding=1).to(device)
    with torch.no_grad():  # non-zero offsets and mask (they start at 0)
        layer.conv_offset.weight.normal_(0, 0.1)
        layer.conv_offset.bias.normal_(0, 0.5)
    x = torch.randn(2, 8, 12, 16, device=device)
    ours, ref, weight = _leaf(x), _leaf(x), _leaf(layer.weight)
    try:
        out = layer(ours)
    except (RuntimeError, NotImplementedError) as exc:
        if device.type == 'cuda':
            raise
        raise Skipped(f'no CPU kernel in this mmcv build ({exc})') from exc
    o1, o2, mask = torch.chunk(layer.conv_offset(ref), 3, dim=1)
    expected = deform_conv2d(ref, torch.cat([o1, o2], 1), weight,
                             layer.bias, padding=1, mask=mask.sigmoid())
    _backward(out)
    _backward(expected)
    numbers = dict(forward_rel=max_rel_diff(out, expected),
                   backward_input_rel=max_rel_diff(ours.grad, ref.grad),
                   backward_weight_rel=max_rel_diff(layer.weight.grad,
                                                    weight.grad))
    return _within(dict(forward_rel=OP_TOL, backward_input_rel=OP_TOL,
                        backward_weight_rel=OP_TOL), numbers,
                   'mmcv vs torchvision deform conv')


def check_msda(device: torch.device) -> Outcome:
    """mmcv's multi-scale deformable attention kernel against its PyTorch
    version, forward and backward; on CUDA also whether it runs on float16
    inputs (as under AMP)."""
    if device.type != 'cuda':
        raise Skipped('mmcv has no CPU kernel; on the CPU '
                      'MultiScaleDeformableAttention runs its PyTorch '
                      'version (multi_scale_deformable_attn_pytorch)')
    from mmcv.ops.multi_scale_deform_attn import (
        MultiScaleDeformableAttnFunction, multi_scale_deformable_attn_pytorch)
    gen = torch.Generator().manual_seed(0)
    shapes = torch.tensor([[16, 20], [8, 10], [4, 5]])
    starts = torch.cat([shapes.new_zeros(1), shapes.prod(1).cumsum(0)[:-1]])
    bs, heads, dims, queries, levels, points = 2, 4, 8, 30, 3, 4
    value = torch.randn(bs, int(shapes.prod(1).sum()), heads, dims,
                        generator=gen)
    loc = torch.rand(bs, queries, heads, levels, points, 2, generator=gen)
    attn = torch.rand(bs, queries, heads, levels * points, generator=gen) \
        .softmax(-1).view(bs, queries, heads, levels, points)
    shapes, starts = shapes.to(device), starts.to(device)
    ours = [_leaf(t.to(device)) for t in (value, loc, attn)]
    ref = [_leaf(t.to(device)) for t in (value, loc, attn)]
    out = MultiScaleDeformableAttnFunction.apply(
        ours[0], shapes, starts, ours[1], ours[2], 64)
    expected = multi_scale_deformable_attn_pytorch(ref[0], shapes, ref[1],
                                                   ref[2])
    _backward(out)
    _backward(expected)
    numbers = dict(forward_rel=max_rel_diff(out, expected))
    for name, a, b in zip(('value', 'location', 'weight'), ours, ref):
        numbers[f'backward_{name}_rel'] = max_rel_diff(a.grad, b.grad)
    try:
        with torch.autocast('cuda', dtype=torch.float16):
            half = MultiScaleDeformableAttnFunction.apply(
                value.to(device).half(), shapes, starts,
                loc.to(device).half(), attn.to(device).half(), 64)
        numbers['fp16_forward_rel'] = max_rel_diff(half.float(), expected)
    except RuntimeError as exc:
        numbers['fp16_error'] = str(exc).splitlines()[0]
    bounds = dict(forward_rel=OP_TOL, backward_value_rel=OP_GRAD_TOL,
                  backward_location_rel=OP_GRAD_TOL,
                  backward_weight_rel=OP_GRAD_TOL, fp16_forward_rel=FP16_TOL)
    detail, numbers = _within(bounds, numbers, 'mmcv kernel vs PyTorch')
    if 'fp16_error' in numbers:
        detail += f"; float16 inputs: {numbers['fp16_error']}"
    return detail, numbers


# -------------------------------------------------------- row 2: parity ---
def heads_outputs(heads, feats: List[torch.Tensor], samples) -> dict:
    """Losses, parameter and feature gradients (training mode) and
    predictions (eval mode) of one ``(rpn_head, roi_head)`` pair."""
    from head_speed import infer_step
    rpn, roi = heads
    rpn.train()
    roi.train()
    feats = [_leaf(f) for f in feats]
    _, proposals = rpn.loss_and_predict(feats, copy.deepcopy(samples))
    losses = roi.loss(feats, proposals, copy.deepcopy(samples))
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    params = itertools.chain(rpn.named_parameters(prefix='rpn_head'),
                             roi.named_parameters(prefix='roi_head'))
    grads = {n: None if p.grad is None else p.grad.detach().clone()
             for n, p in params}
    feat_grads = [f.grad for f in feats]
    for module in heads:
        module.zero_grad(set_to_none=True)
    preds = infer_step(heads, [f.detach() for f in feats], samples)
    return dict(losses={k: v.detach() for k, v in losses.items()},
                grads=grads, feat_grads=feat_grads, preds=preds)


def _by_score(pred) -> Tuple[torch.Tensor, ...]:
    order = torch.argsort(pred.scores, descending=True, stable=True)
    return pred.scores[order], pred.bboxes[order], pred.labels[order]


def compare_heads(ours: dict, ref: dict) -> Dict[str, Any]:
    """The largest relative differences of losses, gradients and
    predictions (ours against MMDetection's), with the worst key each."""
    out: Dict[str, Any] = {}
    if sorted(ours['losses']) != sorted(ref['losses']) or \
            sorted(ours['grads']) != sorted(ref['grads']):
        raise Failed('loss keys or parameter names differ from mmdet: '
                     f"{sorted(set(ours['losses']) ^ set(ref['losses']))} "
                     f"{sorted(set(ours['grads']) ^ set(ref['grads']))}")
    for kind in ('losses', 'grads'):
        diffs = {k: max_rel_diff(ours[kind][k], v)
                 for k, v in ref[kind].items()}
        worst = max(diffs, key=diffs.get)
        out[f'{kind}_rel'], out[f'{kind}_worst'] = diffs[worst], worst
    out['feat_grads_rel'] = max(
        max_rel_diff(a, b) for a, b in zip(ours['feat_grads'],
                                           ref['feat_grads']))
    scores, boxes, mismatched = 0.0, 0.0, 0
    for our_p, ref_p in zip(ours['preds'], ref['preds']):
        if len(our_p) != len(ref_p):
            raise Failed(f'{len(our_p)} predictions, mmdet {len(ref_p)}')
        (o_s, o_b, o_l), (r_s, r_b, r_l) = _by_score(our_p), _by_score(ref_p)
        scores = max(scores, max_rel_diff(o_s, r_s))
        boxes = max(boxes, max_rel_diff(o_b, r_b))
        mismatched += int((o_l != r_l).sum())
    out.update(scores_rel=scores, boxes_rel=boxes, labels_differ=mismatched,
               detections=sum(len(p) for p in ref['preds']))
    return out


def row_parity(ctx: Context) -> Outcome:
    """This package's heads against MMDetection's on the device (the
    machinery of ``benchmarks/head_speed.py``): same weights, FPN features
    and ground truth."""
    import head_speed
    head_speed.MODEL = 'sparse_rcnn'
    img, num = ctx.sizes['parity_img'], ctx.sizes['parity_proposals']
    pairs = head_speed.head_pair(num)
    feats, samples = head_speed.make_inputs(2, img, num_gts=7)
    feats = [f.to(ctx.device) for f in feats]
    samples = [s.to(ctx.device) for s in samples]
    outputs = {}
    for name, heads in pairs.items():
        for module in heads:
            module.to(ctx.device)
        outputs[name] = heads_outputs(heads, feats, samples)
    numbers = compare_heads(outputs['ours'], outputs['mmdet'])
    numbers.update(img=list(img), proposals=num, images=2,
                   stages=len(pairs['ours'][1].bbox_head))
    what = (f"{numbers['stages']} stages, {num} proposals, 2 images "
            f'{img[0]}x{img[1]}')
    bounds = {k: PARITY_TOL for k in ('losses_rel', 'grads_rel',
                                      'feat_grads_rel', 'scores_rel',
                                      'boxes_rel')}
    detail, numbers = _within(bounds, numbers, what)
    if numbers['labels_differ']:
        raise Failed(f"{what}: {numbers['labels_differ']} of "
                     f"{numbers['detections']} labels differ", numbers)
    return detail + ', labels equal', numbers


# ----------------------------------------------------------- row 3: AMP ---
def has_model(cfg_path: str) -> bool:
    """Whether a config file defines a model (ablation switches are
    fragments that only define ``ablation_model``)."""
    from mmengine.config import Config
    return 'model' in Config.fromfile(cfg_path)


def zoo_configs(ablations: bool = False) -> List[str]:
    """The configs under ``configs/`` but the ``_base_`` ones and the
    test-time-augmentation (``_tta``) ones, relative paths, sorted; the
    ablation variants under ``configs/ablations/`` (those that define a
    model) only with ``ablations``."""
    paths = glob.glob(osp.join(CONFIGS, '**', '*.py'), recursive=True)
    chosen = []
    for path in sorted(paths):
        parts = osp.relpath(path, CONFIGS).split(os.sep)
        if '_base_' in parts or path.endswith('_tta.py'):
            continue
        if parts[0] == 'ablations' and not (ablations and has_model(path)):
            continue
        chosen.append(osp.relpath(path, REPO))
    return chosen


def select_configs(names: Sequence[str]) -> List[str]:
    """The configs named by path or file stem; ``zoo`` for
    :func:`zoo_configs`, ``all`` for those and the ablation variants."""
    if list(names) in (['zoo'], ['all']):
        return zoo_configs(ablations=names[0] == 'all')
    zoo = zoo_configs(ablations=True)
    chosen = []
    for name in names:
        stem = osp.splitext(osp.basename(name))[0]
        found = [c for c in zoo if c == osp.normpath(name)
                 or osp.splitext(osp.basename(c))[0] == stem]
        if not found:
            raise ValueError(f'{name!r} is not a config under configs/ '
                             '(not _base_, _tta or an ablation switch)')
        chosen.extend(f for f in found if f not in chosen)
    return chosen


def row_amp(ctx: Context) -> List[Check]:
    """Per config: float16 vs float32 levels of boxes up to 1333 px, and
    one float16 AMP training step (CUDA)."""
    configs = ctx.configs or (
        zoo_configs() if ctx.cuda else [osp.relpath(DEMO_CONFIG, REPO)])
    parts = []
    for cfg in configs:
        stem = osp.splitext(osp.basename(cfg))[0]
        path = osp.join(REPO, cfg)
        parts.append(run_check(f'fp16 levels: {stem}',
                               lambda p=path: check_levels(p, ctx)))
        parts.append(run_check(f'fp16 AMP step: {stem}',
                               lambda p=path: check_amp_step(p, ctx)))
    return parts


def check_levels(cfg_path: str, ctx: Context) -> Outcome:
    """The config's RoI extractor maps RoIs (boxes up to 1333 px in an
    800x1333 image, float32) to the same levels when its features are
    float16 (under autocast on CUDA) as when they are float32."""
    from mmengine.config import Config

    from mmdet_sparse.registry import MODELS
    cfg = Config.fromfile(cfg_path)
    extractor = MODELS.build(dict(cfg.model.roi_head.bbox_roi_extractor,
                                  _scope_='mmdet_sparse')).to(ctx.device)
    rois = level_test_rois().to(ctx.device)
    feats = [torch.zeros(1, extractor.out_channels, 4, 4, device=ctx.device)
             for _ in extractor.featmap_strides]
    levels = {}
    for dtype in (torch.float32, torch.float16):
        with recorded_levels(extractor, stop=True) as calls, \
                torch.autocast(ctx.device.type, dtype=torch.float16,
                               enabled=ctx.cuda and dtype == torch.float16):
            try:
                extractor([f.to(dtype) for f in feats], rois)
            except _LevelsRecorded:
                pass
        levels[dtype] = calls[0]
    numbers = compare_levels(levels[torch.float32]['levels'],
                             levels[torch.float16]['levels'], rois)
    numbers['rois_dtype_fp16'] = levels[torch.float16]['dtype']
    text = level_text(numbers) + \
        f" (RoIs mapped in {numbers['rois_dtype_fp16']})"
    if numbers['mismatches']:
        raise Failed(text, numbers)
    return text, numbers


def amp_optim_wrapper(model: torch.nn.Module, cfg):
    """The config's optimizer wrapper switched to mixed precision as
    ``tools/train.py --amp`` does (``enable_amp``: float16
    ``AmpOptimWrapper`` with dynamic loss scale on CUDA; the bfloat16 CPU
    wrapper otherwise)."""
    from mmdet_sparse.engine import enable_amp
    cfg = copy.deepcopy(cfg)
    summary = enable_amp(cfg)
    return optim_wrapper_of(model, cfg.optim_wrapper), summary


def optim_wrapper_of(model: torch.nn.Module, optim_cfg: dict):
    """Build an optimizer wrapper config in this package's scope (which
    holds the CPU bfloat16 wrapper)."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmdet_sparse'):
        return build_optim_wrapper(model, copy.deepcopy(optim_cfg))


def _stage1_levels(model, batch: dict, optim_wrapper=None) -> dict:
    """Stage-1 levels of the bbox RoI extractor in one forward: a float32
    loss forward without gradients, or (``optim_wrapper``) a training step,
    whose log variables are returned too."""
    extractor = model.roi_head.bbox_roi_extractor
    if isinstance(extractor, torch.nn.ModuleList):
        extractor = extractor[0]
    with recorded_levels(extractor) as calls:
        if optim_wrapper is None:
            with torch.no_grad():
                data = model.data_preprocessor(copy.deepcopy(batch), True)
                model(**data, mode='loss')
            log_vars = {}
        else:
            log_vars = model.train_step(copy.deepcopy(batch), optim_wrapper)
    return dict(calls[0], log_vars=log_vars)


def check_amp_step(cfg_path: str, ctx: Context) -> Outcome:
    """One mixed-precision training step of the config's model (random
    weights, a random 2-image batch): every loss finite, and the first
    stage's RoIs (learned proposals spread over the image) on the same
    pyramid levels as in a float32 forward. Float16 needs CUDA; on the CPU
    the same code runs with bfloat16 autocast and the check is marked
    skipped."""
    from head_speed import spread_boxes
    model, cfg = build_detector(cfg_path, ctx.device)
    num = model.rpn_head.init_proposal_bboxes.num_embeddings
    with torch.no_grad():  # proposals on every level, not the whole image
        model.rpn_head.init_proposal_bboxes.weight.copy_(spread_boxes(num))
    batch = random_batch(cfg.model, 2, ctx.sizes['amp_img'])
    fp32 = _stage1_levels(model, batch)
    optim_wrapper, summary = amp_optim_wrapper(model, cfg)
    amp = _stage1_levels(model, batch, optim_wrapper)
    numbers = dict(compare_levels(fp32['levels'], amp['levels']),
                   losses={k: float(v) for k, v in amp['log_vars'].items()},
                   rois_dtype=amp['dtype'],
                   optim_wrapper=type(optim_wrapper).__name__,
                   img=list(ctx.sizes['amp_img']))
    scaler = getattr(optim_wrapper, 'loss_scaler', None)
    if scaler is not None:
        numbers['loss_scale'] = float(scaler.get_scale())
    text = _amp_outcome(numbers, summary.split(':', 1)[1].strip())
    if not ctx.cuda:
        raise Skipped('float16 AmpOptimWrapper needs CUDA; the same code '
                      f'ran with {text}', numbers)
    return text, numbers


def _amp_outcome(numbers: Dict[str, Any], summary: str) -> str:
    """The detail of an AMP step; :class:`Failed` when a loss is not finite
    or a stage-1 RoI changed level."""
    losses = numbers['losses']
    text = (f"{numbers['optim_wrapper']} ({summary}): loss "
            f"{losses.get('loss', math.nan):.4g}, stage-1 RoIs mapped in "
            f"{numbers['rois_dtype']}")
    problems = []
    bad = sorted(k for k, v in losses.items() if not math.isfinite(v))
    if bad:
        problems.append(f'non-finite {bad}')
    if numbers['mismatches']:
        problems.append(f"stage-1 levels differ for {numbers['mismatches']}"
                        f" of {numbers['rois']} RoIs "
                        f"{numbers['mismatch_levels']}")
    if problems:
        raise Failed(f'{text}; ' + '; '.join(problems), numbers)
    return text + (f", same levels as float32 for all {numbers['rois']} "
                   'RoIs')


# -------------------------------------------------------- row 4: resume ---
def _loss_recorder():
    """A hook that records the log variables of every training iteration
    (``.losses[iteration]``, 1-based)."""
    from mmengine.hooks import Hook

    class LossRecorder(Hook):
        priority = 'LOWEST'

        def __init__(self) -> None:
            self.losses: Dict[int, Dict[str, float]] = {}

        def after_train_iter(self, runner, batch_idx, data_batch=None,
                             outputs=None) -> None:
            self.losses[runner.iter + 1] = {
                k: float(v) for k, v in (outputs or {}).items()}

    return LossRecorder()


def resume_config(data_root: str, work_dir: str, scale: int,
                  load_from: Optional[str] = None):
    """The shapes demo config for 4 iterations (8 images, batches of 2, one
    epoch, no workers, no validation) with an iteration checkpoint every 2;
    resumed from ``load_from`` when given."""
    from mmengine.config import Config
    cfg = Config.fromfile(DEMO_CONFIG)
    loader = cfg.train_dataloader
    loader.update(batch_size=2, num_workers=0, persistent_workers=False)
    loader.dataset.data_root = data_root
    for step in loader.dataset.pipeline:
        if step['type'] == 'Resize':
            step['scale'] = (scale, scale)
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.test_dataloader = cfg.test_cfg = cfg.test_evaluator = None
    cfg.train_cfg = dict(type='ResumableEpochBasedTrainLoop', max_epochs=1)
    cfg.default_hooks.checkpoint = dict(
        type='AtomicCheckpointHook', interval=2, by_epoch=False,
        max_keep_ckpts=-1, save_best=None)
    cfg.default_hooks.logger.interval = 1
    cfg.log_level = 'WARNING'
    cfg.randomness = dict(seed=0)
    cfg.work_dir = work_dir
    cfg.experiment_name = f'gpu_check_resume_{uuid.uuid4().hex}'
    cfg.resume = load_from is not None
    cfg.load_from = load_from
    return cfg


def train_losses(cfg) -> Dict[int, Dict[str, float]]:
    """Train a Runner built from ``cfg``; the log variables per
    iteration."""
    from mmengine.runner import Runner
    runner = Runner.from_cfg(cfg)
    recorder = _loss_recorder()
    runner.register_hook(recorder)
    runner.train()
    return recorder.losses


def row_resume(ctx: Context) -> Outcome:
    """Resume the shapes demo from an iteration checkpoint on the device:
    iterations 3-4 of the resumed run against the uninterrupted run's."""
    from mmdet_sparse.datasets import ensure_shapes_dataset
    data = osp.join(ctx.tmp, 'shapes')
    ensure_shapes_dataset(data, num_train=8, num_val=2)
    scale, tol = ctx.sizes['resume_scale'], ctx.sizes['resume_tol']
    first = osp.join(ctx.tmp, 'resume_first')
    whole = train_losses(resume_config(data, first, scale))
    ckpt = osp.join(first, 'iter_2.pth')
    resumed = train_losses(resume_config(data, osp.join(ctx.tmp, 'resumed'),
                                         scale, load_from=ckpt))
    numbers: Dict[str, Any] = dict(
        iterations=sorted(whole), resumed_iterations=sorted(resumed),
        tolerance=tol, img_scale=scale,
        loss={i: whole[i].get('loss') for i in sorted(whole)},
        resumed_loss={i: resumed[i].get('loss') for i in sorted(resumed)})
    if sorted(whole) != [1, 2, 3, 4] or sorted(resumed) != [3, 4]:
        raise Failed(f'trained iterations {sorted(whole)}, resumed '
                     f'{sorted(resumed)} (expected 1-4 and 3-4)', numbers)
    diff = max(abs(resumed[i][k] - v) / max(abs(v), 1e-12)
               for i in (3, 4) for k, v in whole[i].items()
               if k.startswith('loss') or '.loss' in k)
    numbers['max_rel_diff'] = diff
    text = (f"iterations 3-4 resumed from iter_2.pth: loss "
            f"{resumed[3]['loss']:.6g}, {resumed[4]['loss']:.6g}; largest "
            f"relative difference of any loss {diff:.1e} (bound {tol:g})")
    if not diff <= tol:
        raise Failed(text, numbers)
    return text, numbers


# ----------------------------------------------------------- row 5: DDP ---
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _ddp_train_step(rank: int, device: torch.device) -> Tuple[
        float, List[Optional[torch.Tensor]], torch.nn.Module]:
    """One DDP training step of the demo model on this rank's own random
    batch: ``(loss, gradients after the all-reduce, model after the
    update)``. The ranks start from different weights, so that the step
    also checks DDP's initial broadcast of rank 0's."""
    from mmengine.model import MMDistributedDataParallel
    model, cfg = build_detector(DEMO_CONFIG, device, seed=rank)
    ddp = MMDistributedDataParallel(
        module=model, device_ids=[rank] if device.type == 'cuda' else None,
        broadcast_buffers=False, find_unused_parameters=False)
    optim_wrapper = optim_wrapper_of(model, cfg.optim_wrapper)
    data = model.data_preprocessor(
        random_batch(cfg.model, 2, (256, 256), seed=100 + rank), True)
    loss, _ = model.parse_losses(ddp(**data, mode='loss'))
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    optim_wrapper.step()
    return loss.item(), grads, model


def _checksums(loss: float, grads: List[Optional[torch.Tensor]],
               model: torch.nn.Module) -> torch.Tensor:
    """float64 ``[loss, gradients missing, (sum, sum of |g|) per gradient,
    sum per parameter]``."""
    def total(t: Optional[torch.Tensor], fn=lambda t: t) -> float:
        return 0.0 if t is None else fn(t.double()).sum().item()
    head = [loss, float(sum(g is None for g in grads))]
    pairs = [v for g in grads for v in (total(g), total(g, torch.abs))]
    params = [total(p.detach()) for p in model.parameters()]
    return torch.tensor(head + pairs + params, dtype=torch.float64)


def _ddp_rank(rank: int, world: int, backend: str, port: int,
              out_path: str) -> None:
    """One process of the DDP check: a training step, then rank 0 writes
    every rank's checksums (all-gathered) to ``out_path``."""
    import torch.distributed as dist
    quiet()
    import mmdet_sparse  # noqa: F401 (registers the modules)
    device = torch.device('cuda', rank) if backend == 'nccl' else \
        torch.device('cpu')
    if device.type == 'cuda':
        torch.cuda.set_device(device)
    dist.init_process_group(backend, init_method=f'tcp://127.0.0.1:{port}',
                            rank=rank, world_size=world)
    try:
        loss, grads, model = _ddp_train_step(rank, device)
        local = _checksums(loss, grads, model).to(device)
        gathered = [torch.empty_like(local) for _ in range(world)]
        dist.all_gather(gathered, local)
        if rank == 0:
            with open(out_path, 'w') as f:
                json.dump(dict(checksums=[g.cpu().tolist() for g in gathered],
                               num_grads=len(grads)), f)
    finally:
        dist.destroy_process_group()


def row_ddp(ctx: Context) -> Outcome:
    """One 2-rank DDP training step: the gradients and the updated weights
    must be equal on both ranks."""
    gpus = torch.cuda.device_count() if ctx.cuda else 0
    if ctx.cuda and gpus < 2:
        raise Skipped(f'needs 2 GPUs, found {gpus}')
    if not ctx.cuda and not ctx.ddp_on_cpu:
        raise Skipped('needs 2 GPUs (--ddp-on-cpu runs the same check with '
                      'gloo on 2 CPU processes)')
    backend = 'nccl' if ctx.cuda else 'gloo'
    out_path = osp.join(ctx.tmp, 'ddp.json')
    torch.multiprocessing.spawn(
        _ddp_rank, args=(2, backend, free_port(), out_path), nprocs=2,
        join=True)
    with open(out_path) as f:
        result = json.load(f)
    ranks = [torch.tensor(c, dtype=torch.float64)
             for c in result['checksums']]
    n = result['num_grads']
    losses = [r[0].item() for r in ranks]
    numbers = dict(backend=backend, ranks=2, losses=losses, grads=n,
                   grads_missing=int(ranks[0][1]),
                   grad_rel=max_rel_diff(ranks[1][2:2 + 2 * n],
                                         ranks[0][2:2 + 2 * n]),
                   param_rel=max_rel_diff(ranks[1][2 + 2 * n:],
                                          ranks[0][2 + 2 * n:]))
    text = (f"{backend}, losses {losses[0]:.4g} / {losses[1]:.4g}: gradient "
            f"checksums differ by {numbers['grad_rel']:.1e}, updated "
            f"weights by {numbers['param_rel']:.1e}")
    if numbers['grad_rel'] > 1e-6 or numbers['param_rel'] > 1e-6:
        raise Failed(text, numbers)
    if losses[0] == losses[1]:
        raise Failed(text + ' (both ranks had the same loss: same batch?)',
                     numbers)
    return text, numbers


# ----------------------------------------------------------- row 6: FPS ---
def fps_inputs(model, img: Tuple[int, int], device: torch.device):
    """A random ``img`` image through the model's data preprocessor
    (normalised, padded to 32) and its data sample, batch 1."""
    from mmdet.structures import DetDataSample
    h, w = img
    gen = torch.Generator().manual_seed(0)
    sample = DetDataSample(metainfo=dict(
        img_id=0, ori_shape=(h, w), img_shape=(h, w),
        scale_factor=(1.0, 1.0)))
    data = model.data_preprocessor(dict(
        inputs=[torch.randint(0, 256, (3, h, w), generator=gen,
                              dtype=torch.uint8)],
        data_samples=[sample]), False)
    return data['inputs'].to(device), data['data_samples']


def time_interleaved(fns: Dict[str, Callable[[], Any]], warmup: int,
                     repeats: int, device: torch.device) -> Dict[str, float]:
    """Median seconds of each function, runs interleaved, synchronised."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: Dict[str, List[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def row_fps(ctx: Context) -> Outcome:
    """Batch-1 inference FPS at 800x1333 of this package's R50-FPN Sparse
    R-CNN (100 proposals) and MMDetection's, same weights, float32 and
    float16 autocast."""
    if not ctx.cuda and not ctx.fps_on_cpu:
        raise Skipped('use tools/benchmark.py / benchmarks/onnx_speed.py '
                      'on CPU (or --fps-on-cpu)')
    ours, _ = build_detector(R50_CONFIG, ctx.device)
    ref, _ = build_detector(mmdet_config_path(*MMDET_R50_CONFIG),
                            ctx.device, scope='mmdet')
    ours.load_state_dict(ref.state_dict(), strict=True)
    ours.eval()
    ref.eval()
    inputs, samples = fps_inputs(ours, ctx.sizes['fps_img'], ctx.device)
    models = dict(ours=ours, mmdet=ref)
    numbers: Dict[str, Any] = dict(img=list(ctx.sizes['fps_img']),
                                   paper_fps_v100=PAPER_FPS,
                                   repeats=ctx.sizes['fps_repeats'])
    precisions = [('fp32', False)] + ([('fp16', True)] if ctx.cuda else [])
    for precision, autocast in precisions:
        def predict(model, autocast=autocast):
            with torch.no_grad(), torch.autocast(
                    ctx.device.type, dtype=torch.float16, enabled=autocast):
                return model.predict(inputs, copy.deepcopy(samples))
        seconds = time_interleaved(
            {k: (lambda m=m: predict(m)) for k, m in models.items()},
            ctx.sizes['fps_warmup'], ctx.sizes['fps_repeats'], ctx.device)
        for name, sec in seconds.items():
            numbers[f'{name}_{precision}_fps'] = 1 / sec
    text = '; '.join(
        f"{p}: ours {numbers[f'ours_{p}_fps']:.3g} FPS, mmdet "
        f"{numbers[f'mmdet_{p}_fps']:.3g}" for p, _ in precisions)
    return (f'{text} (paper: {PAPER_FPS:g} FPS on a V100, R50 100 '
            'proposals)'), numbers


ROW_FUNCTIONS: Dict[str, Callable[[Context], Any]] = dict(
    mmcv_ops=row_mmcv_ops, parity=row_parity, amp=row_amp,
    resume=row_resume, ddp=row_ddp, fps=row_fps)


# ---------------------------------------------------------- reporting ---
def _version(module: str) -> Optional[str]:
    try:
        return __import__(module).__version__
    except Exception:  # noqa: BLE001 - a missing package is reported None
        return None


def environment(device: torch.device) -> Dict[str, Any]:
    """Versions, device and settings that the results depend on."""
    env: Dict[str, Any] = dict(
        date_utc=datetime.datetime.now(datetime.timezone.utc).strftime(
            '%Y-%m-%d %H:%M'),
        python=platform.python_version(), torch=torch.__version__,
        torch_cuda=torch.version.cuda,
        cudnn=torch.backends.cudnn.version() if device.type == 'cuda'
        else None,
        mmcv=_version('mmcv'), mmengine=_version('mmengine'),
        mmdet=_version('mmdet'), device=str(device),
        cpu=platform.processor() or platform.machine(),
        cpu_threads=torch.get_num_threads())
    try:
        from mmcv.ops import get_compiling_cuda_version
        env['mmcv_compiled_cuda'] = get_compiling_cuda_version()
    except Exception as exc:  # noqa: BLE001 - the mmcv_ops row fails too
        env['mmcv_compiled_cuda'] = f'mmcv.ops not importable: {exc}'
    if device.type == 'cuda':
        env['gpus'] = [torch.cuda.get_device_name(i)
                       for i in range(torch.cuda.device_count())]
        env['gpu'] = torch.cuda.get_device_name(device)
        env['tf32_matmul'] = torch.backends.cuda.matmul.allow_tf32
        env['tf32_cudnn'] = torch.backends.cudnn.allow_tf32
    try:
        env['commit'] = subprocess.run(
            ['git', 'rev-parse', '--short', 'HEAD'], cwd=REPO, text=True,
            capture_output=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        env['commit'] = None
    return env


def header(env: Dict[str, Any]) -> str:
    gpu = env.get('gpu') or f"CPU ({env['cpu']}, {env['cpu_threads']} " \
        'threads)'
    return (f"device {env['device']}: {gpu}\n"
            f"torch {env['torch']} (CUDA {env['torch_cuda']}), mmcv "
            f"{env['mmcv']} (ops CUDA {env['mmcv_compiled_cuda']}), mmdet "
            f"{env['mmdet']}, mmengine {env['mmengine']}, python "
            f"{env['python']}, commit {env['commit']}")


def format_table(rows: Sequence[Check]) -> str:
    """The results as a Markdown table, parts indented under their row."""
    lines = ['| row | status | seconds | detail |', '|---|---|---|---|']
    for row in rows:
        lines.append(f'| {row.name} | {row.status} | {row.seconds:.1f} | '
                     f'{row.detail} |')
        for part in row.parts:
            lines.append(f'| - {part.name} | {part.status} | '
                         f'{part.seconds:.1f} | {part.detail} |')
    return '\n'.join(lines)


def write_json(path: str, report: dict) -> None:
    """Write the report to ``path`` atomically."""
    from mmdet_sparse.engine.checkpoint_hook import write_atomically
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    text = json.dumps(report, indent=2, default=str)
    write_atomically(osp.abspath(path), lambda f: f.write(text), mode='w')


# --------------------------------------------------------------- main ---
def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='See docs/gpu.md for what each row checks.')
    parser.add_argument('--device', default=None,
                        help="'cuda', 'cuda:N' or 'cpu' (default: cuda when "
                        'available)')
    parser.add_argument('--out', default=osp.join('work_dirs',
                                                  'gpu_check.json'),
                        help='JSON report (default: %(default)s)')
    parser.add_argument('--rows', nargs='+', choices=ROWS,
                        default=list(ROWS), help='rows to run (default: all)')
    parser.add_argument('--configs', nargs='+',
                        help="configs for the amp row: paths or file stems, "
                        "'zoo' (every config but _base_, _tta and "
                        "ablations) or 'all' (with the ablation variants); "
                        'default: zoo on CUDA, the shapes demo on the CPU')
    parser.add_argument('--fps-on-cpu', action='store_true',
                        help='run the fps row on the CPU too (slow)')
    parser.add_argument('--ddp-on-cpu', action='store_true',
                        help='run the ddp row with gloo on 2 CPU processes')
    return parser.parse_args(argv)


def resolve_device(name: Optional[str]) -> torch.device:
    """The device to check. ``cpu`` hides the GPUs from this process (so
    that the Runner of the resume row stays on the CPU)."""
    if name is None:
        name = 'cuda' if torch.cuda.is_available() else 'cpu'
    device = torch.device(name)
    if device.type == 'cpu':
        os.environ['CUDA_VISIBLE_DEVICES'] = ''
    elif device.type == 'cuda':
        if not torch.cuda.is_available():
            raise SystemExit('--device cuda: no CUDA device is available '
                             '(use --device cpu)')
        if device.index is not None:
            torch.cuda.set_device(device)
        device = torch.device('cuda', torch.cuda.current_device())
    else:
        raise SystemExit(f'--device {name}: only cuda and cpu are checked')
    return device


def quiet() -> None:
    """Keep the third-party warnings and the Runner's info logs out of the
    table."""
    warnings.filterwarnings('ignore')
    from mmengine.logging import MMLogger
    MMLogger.get_instance('mmengine', log_level='ERROR')


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the rows; print the table, write the JSON; 1 if any row
    failed."""
    args = parse_args(argv)
    try:
        configs = select_configs(args.configs) if args.configs else None
    except ValueError as exc:
        raise SystemExit(f'--configs: {exc}') from exc
    device = resolve_device(args.device)
    quiet()
    import mmdet_sparse  # noqa: F401 (registers the modules)
    env = environment(device)
    print(header(env), flush=True)
    rows: List[Check] = []
    with tempfile.TemporaryDirectory(prefix='gpu_check_') as tmp:
        ctx = Context(device=device, tmp=tmp, configs=configs,
                      fps_on_cpu=args.fps_on_cpu, ddp_on_cpu=args.ddp_on_cpu)
        for name in ROWS:
            if name not in args.rows:
                continue
            row = run_row(name, ROW_FUNCTIONS[name], ctx)
            rows.append(row)
            print(f'[{row.status}] {name} ({row.seconds:.1f} s) '
                  f'{row.detail}', flush=True)
    table = format_table(rows)
    print('\n' + table)
    failed = [r.name for r in rows if r.status == FAIL]
    report = dict(env=env, args=vars(args), ok=not failed, failed=failed,
                  rows=[r.to_json() for r in rows])
    write_json(args.out, report)
    print(f"\n{'FAILED: ' + ', '.join(failed) if failed else 'all ok'} "
          f'(skipped rows say why); report: {args.out}')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
