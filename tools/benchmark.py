"""Compare Sparse R-CNN models (backbones): parameters, FLOPs, latency,
peak memory on one fixed-size input.

Example::

    python tools/benchmark.py configs/sparse_rcnn_r50_fpn_3x_coco.py \\
        configs/sparse_rcnn_swin_t_fpn_3x_coco.py --device cuda

Each config runs in a fresh subprocess (``--child``, one JSON line), which
isolates the configs and makes the CPU peak-memory figure meaningful. The
model is built with random weights (pretrained checkpoints are never read)
and measured in eval mode under ``torch.no_grad()`` on a random, already
normalised ``(1, 3, H, W)`` input: data loading and preprocessing are
excluded. Writes ``OUT_DIR/benchmark.md``, ``benchmark.json`` and
``benchmark.png`` (latency vs parameters, vs GFLOPs; COCO AP vs latency).

* FLOPs: ``torch.utils.flop_counter.FlopCounterMode``, which counts 2 FLOPs
  per multiply-add of matrix products (``mm``/``addmm``/``bmm``/
  ``baddbmm``), convolutions and scaled-dot-product attention: the dynamic
  convolution's ``bmm`` and the attention products are included (the fused
  ``nn.MultiheadAttention`` fast path is switched off while counting, so
  that its products are seen); RoIAlign, deformable sampling
  (mmcv/torchvision custom ops), normalisation and element-wise ops are
  not. Heads FLOPs = total - ``extract_feat`` FLOPs.
* ``--backend onnxruntime`` / ``openvino`` (CPU): the model is exported
  to a fixed-size ONNX graph (``mmdet_sparse.deploy``) and the whole graph
  is timed in an ONNX Runtime session (or OpenVINO's CPU plugin, float32)
  with ``--threads`` intra-op threads; there is no
  backbone/heads split (reported as nan). FLOPs are those of the PyTorch
  model. ``--precision bf16``: OpenVINO in bfloat16 (CPUs with bfloat16
  instructions); ``--precision int8``: the graph quantized by
  ``mmdet_sparse.deploy.quantize`` (calibrated on the one random input:
  for speed only).
* Latency: median of ``--repeats`` timed runs after ``--warmup`` runs
  (``torch.cuda.synchronize()`` before each clock read on CUDA). Each run
  is one prediction (what ``model.predict`` runs) with a clock read between
  its parts: backbone+neck (``model.extract_feat``) and heads (RPN, i.e. the
  learned proposals, and RoI heads). A run's total is the sum of its parts,
  so no median part exceeds the median total.
* Accuracy: the published COCO val2017 box AP of a config, where one exists
  (:data:`PUBLISHED_AP`, each with its source); ``benchmark.png`` plots it
  against latency and marks the Pareto front (no other config is both
  faster and more accurate). An AP published for a different setting than
  the config's (backbone variant, proposals) is drawn hollow, marked ``*``,
  and left out of the front.
* Peak memory: on CUDA ``torch.cuda.max_memory_allocated()`` during the timed
  runs (weights included); on the CPU the growth of the process peak RSS
  during the timed runs over the RSS before them, after the allocator's
  unused memory is returned to the system (activations and workspaces; the
  weights are excluded).
"""
import argparse
import ctypes
import gc
import json
import os
import os.path as osp
import resource
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)

import torch  # noqa: E402

RESULT_MARK = 'BENCHMARK_RESULT '
FLOPS_NOTE = ('GFLOPs: torch.utils.flop_counter.FlopCounterMode, 2 FLOPs per '
              'multiply-add; counts matrix products (mm/addmm/bmm/baddbmm: '
              'incl. the dynamic conv and attention), convolutions and '
              'scaled-dot-product attention; not RoIAlign / deformable '
              'sampling (custom ops), norms or element-wise ops.')
MEM_NOTES = {
    'cuda': 'peak mem: torch.cuda.max_memory_allocated() during the timed '
            'runs (weights included).',
    'cpu': 'peak mem: growth of the process peak RSS during the timed runs '
           '(activations/workspaces; weights excluded).',
}


_MMDET_ZOO = ('MMDetection 3.3.0 model zoo (configs/sparse_rcnn/README.md '
              'and metafile.yml)')
# Published COCO val2017 box AP of Sparse R-CNN per config of this package.
# ``same_setting``: the published run used this config's backbone and
# number of proposals.
PUBLISHED_AP: Dict[str, dict] = {
    'sparse_rcnn_r50_fpn_1x_coco': dict(
        ap=37.9, source=_MMDET_ZOO, same_setting=True),
    'sparse_rcnn_r50_fpn_3x_coco': dict(
        ap=42.8, source=_MMDET_ZOO, same_setting=True),
    'sparse_rcnn_r50_fpn_300pro_crop_3x_coco': dict(
        ap=45.0, source=_MMDET_ZOO, same_setting=True),
    'sparse_rcnn_r101_fpn_3x_coco': dict(
        ap=44.2, source=_MMDET_ZOO, same_setting=True),
    'sparse_rcnn_r101_fpn_300pro_crop_3x_coco': dict(
        ap=46.2, source=_MMDET_ZOO, same_setting=True),
    'sparse_rcnn_swin_t_fpn_3x_coco': dict(
        ap=47.9, same_setting=False,
        source='Swin Transformer paper (Liu et al., ICCV 2021, '
        'arXiv:2103.14030), Table 2(a), Sparse R-CNN with Swin-T, 3x',
        note='its Sparse R-CNN R-50 baseline reads 44.5, the 300-proposal '
        'level; this config has 100 proposals'),
    'sparse_rcnn_pvtv2_b2_fpn_3x_coco': dict(
        ap=45.7, same_setting=False,
        source='Sparse R-CNN authors\' README (github.com/PeizeSun/'
        'SparseR-CNN), PVTSmall_300pro_3x',
        note='PVT-Small (v1) with 300 proposals; this config is PVTv2-b2 '
        'with 100 (the same README lists PVTv2-b2, 300 proposals + crop, '
        'at 50.1)'),
    'sparse_rcnn_deit_adapter_small_fpn_3x_coco': dict(
        ap=48.1, same_setting=True,
        source='ViT-Adapter paper (Chen et al., ICLR 2023, '
        'arXiv:2205.08534), Sparse R-CNN 3x+MS with ViT-Adapter-S'),
}


# ----------------------------------------------------------------- model ---
def backbone_label(backbone: dict) -> str:
    """Short backbone name from its config, e.g. ``ResNet-50``."""
    name = backbone['type']
    if name == 'TimmBackbone':
        return f"timm {backbone['model_name']}"
    if 'depth' in backbone and name.startswith('ResN'):
        return f"{name}-{backbone['depth']}"
    return name


def build_model(config: str, device: str = 'cpu'):
    """Eval-mode model of ``config`` with random weights, and its config.

    A ``Pretrained`` backbone ``init_cfg`` is dropped and timm backbones get
    ``pretrained=False`` so that nothing is downloaded or read;
    ``init_weights()`` is not called.
    """
    import mmdet_sparse  # noqa: F401  (registers the modules)
    from mmengine.config import Config
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import DefaultScope
    from mmdet_sparse.registry import MODELS

    cfg = Config.fromfile(config)
    backbone = cfg.model.backbone
    init_cfg = backbone.get('init_cfg')
    if isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained':
        backbone.init_cfg = None
    if backbone.type == 'TimmBackbone':
        backbone.pretrained = False
        backbone.checkpoint_path = None
    elif backbone.get('pretrained') is not None:
        backbone.pretrained = None
    with DefaultScope.overwrite_default_scope(
            cfg.get('default_scope', 'mmdet_sparse')):
        model = revert_sync_batchnorm(MODELS.build(cfg.model))
    # no parameter needs a gradient (also keeps the FLOP counter's module
    # tracker from hooking the learned proposals, returned as they are)
    return model.to(device).eval().requires_grad_(False), cfg


def make_inputs(img_size: Tuple[int, int], device: str = 'cpu'):
    """Random normalised ``(1, 3, H, W)`` input and its ``DetDataSample``."""
    from mmdet.structures import DetDataSample
    h, w = img_size
    if h % 32 or w % 32:
        raise ValueError(f'--img-size must be multiples of 32, got {h}x{w}')
    sample = DetDataSample(metainfo=dict(
        img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
        scale_factor=(1.0, 1.0), batch_input_shape=(h, w)))
    gen = torch.Generator().manual_seed(0)
    return torch.randn(1, 3, h, w, generator=gen).to(device), [sample]


def run_heads(model, feats, samples) -> list:
    """The detector's ``predict`` after ``extract_feat``: learned proposals
    (RPN head) and the iterative RoI heads."""
    proposals = model.rpn_head.predict(feats, samples, rescale=False)
    return model.roi_head.predict(feats, proposals, samples, rescale=True)


def onnx_runner(model, config: str, inputs, threads: Optional[int],
                backend: str = 'onnxruntime',
                precision: str = 'fp32') -> Callable[[], object]:
    """``run()`` of ``model`` exported to a fixed-size ONNX graph at the
    size of ``inputs``, in ``backend`` (``'onnxruntime'`` or
    ``'openvino'``) and ``precision`` (``'fp32'``, ``'bf16'`` or
    ``'int8'``: quantized, calibrated on ``inputs``)."""
    import tempfile

    import numpy as np

    from mmdet_sparse.deploy import OnnxDetector, export_onnx
    h, w = inputs.shape[-2:]
    with tempfile.TemporaryDirectory() as tmp:
        path = osp.join(tmp, 'model.onnx')
        export_onnx(config, None, path, img_size=(h, w), model=model)
        image = inputs.cpu().numpy()
        size = np.array([h, w], np.int64)
        if precision == 'int8':
            from mmdet_sparse.deploy.quantize import (InputsReader,
                                                      quantize_model)
            quantize_model(path, path, InputsReader(
                [dict(image=image, image_size=size)]))
        detector = OnnxDetector(
            path, threads, backend=backend,
            precision='fp32' if precision == 'int8' else precision)
    return lambda: detector.run(image, size)


def count_params(model) -> Dict[str, int]:
    """Parameters: total, backbone, neck, heads (RPN + RoI heads)."""
    def num(module) -> int:
        return sum(p.numel() for p in module.parameters()) if module else 0
    heads = num(getattr(model, 'rpn_head', None)) + \
        num(getattr(model, 'roi_head', None))
    return dict(total=num(model), backbone=num(model.backbone),
                neck=num(getattr(model, 'neck', None)), heads=heads)


# ------------------------------------------------------------- measuring ---
def count_flops(fn: Callable[[], object]) -> Tuple[int, Dict[str, int]]:
    """FLOPs of one ``fn()`` call (total, per aten op).

    ``nn.MultiheadAttention``'s inference fast path is one fused op that the
    counter does not see; it is switched off while counting, so that the
    projections and attention products are counted as ``addmm``/``bmm``.
    """
    from torch.utils.flop_counter import FlopCounterMode
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with FlopCounterMode(display=False) as counter:
            fn()
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    by_op = counter.get_flop_counts().get('Global', {})
    return counter.get_total_flops(), {
        str(op).split('.')[-1]: int(n) for op, n in by_op.items()}


def predict_in_parts(model, inputs, samples,
                     sync: Callable[[], None] = lambda: None
                     ) -> Tuple[float, float, list]:
    """``model.predict(inputs, samples)`` as its two parts, each timed.

    Runs what ``TwoStageDetector.predict`` runs: ``extract_feat``, the RPN
    and RoI heads (:func:`run_heads`), ``add_pred_to_datasample``.

    Returns:
        tuple: seconds of backbone+neck, seconds of the heads (with the
        attaching of the predictions), and the predicted samples.
    """
    sync()
    start = time.perf_counter()
    feats = model.extract_feat(inputs)
    sync()
    mid = time.perf_counter()
    results = run_heads(model, feats, samples)
    samples = model.add_pred_to_datasample(samples, results)
    sync()
    return mid - start, time.perf_counter() - mid, samples


def time_runs(fn: Callable[[], object], repeats: int,
              sync: Callable[[], None]) -> List[float]:
    """Wall-clock seconds of ``repeats`` calls of ``fn`` (a backend that
    runs the whole model as one graph)."""
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return times


def time_parts(model, inputs, samples, repeats: int,
               sync: Callable[[], None]) -> Dict[str, List[float]]:
    """Seconds of ``repeats`` predictions, each split into backbone+neck and
    heads within the same run, so that the parts add up to the total of
    that run (``total``, ``backbone_neck``, ``heads``: one entry per run)."""
    times: Dict[str, List[float]] = dict(total=[], backbone_neck=[],
                                         heads=[])
    for _ in range(repeats):
        feat, heads, _ = predict_in_parts(model, inputs, samples, sync)
        times['backbone_neck'].append(feat)
        times['heads'].append(heads)
        times['total'].append(feat + heads)
    return times


def _peak_rss_mib() -> float:
    """Peak RSS of this process (``ru_maxrss``) in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == 'darwin' else 2**10)


def _reset_peak_rss() -> float:
    """Prepare a peak-RSS measurement; returns the RSS (MiB) to subtract.

    Memory the allocator holds but does not use is returned to the system
    (glibc ``malloc_trim``), so that the measured runs must touch their
    pages again, and the peak is reset to the current RSS (Linux). Where
    that is not possible, the current peak is returned.
    """
    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (AttributeError, OSError):
        pass  # not glibc
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')  # reset the RSS high-water mark
        with open('/proc/self/statm') as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf('SC_PAGE_SIZE') / 2**20
    except OSError:
        return _peak_rss_mib()


def measure(config: str,
            img_size: Sequence[int] = (800, 1216),
            warmup: int = 1,
            repeats: int = 3,
            device: str = 'cpu',
            threads: Optional[int] = None,
            flops: bool = True,
            backend: str = 'pytorch',
            precision: str = 'fp32') -> dict:
    """Measure one config in this process; see the module docstring."""
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    model, cfg = build_model(config, device)
    inputs, samples = make_inputs(tuple(img_size), device)
    cuda = inputs.is_cuda
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    result = dict(
        config=osp.splitext(osp.basename(config))[0],
        backbone=backbone_label(cfg.model.backbone),
        proposals=int(model.rpn_head.num_proposals),
        params=count_params(model), backend=backend, precision=precision)
    with torch.no_grad():
        def full():
            return model.predict(inputs, samples)

        run = full if backend == 'pytorch' else onnx_runner(
            model, config, inputs, threads, backend, precision)
        for _ in range(max(warmup, 0)):
            if backend == 'pytorch':
                predict_in_parts(model, inputs, samples, sync)
            else:
                run()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        else:
            rss_before = _reset_peak_rss()
        if backend == 'pytorch':
            times = time_parts(model, inputs, samples, repeats, sync)
        else:  # one graph: no backbone / heads split
            total = time_runs(run, repeats, sync)
            nan = [float('nan')] * len(total)
            times = dict(total=total, backbone_neck=nan, heads=nan)
        if cuda:
            peak = torch.cuda.max_memory_allocated() / 2**20
        else:
            peak = max(_peak_rss_mib() - rss_before, 0.0)
        if flops:
            flops_total, _ = count_flops(full)
            flops_feat, _ = count_flops(lambda: model.extract_feat(inputs))
            feats = model.extract_feat(inputs)
            _, heads_by_op = count_flops(
                lambda: run_heads(model, feats, samples))
            result['flops'] = dict(total=flops_total, backbone_neck=flops_feat,
                                   heads=flops_total - flops_feat,
                                   heads_by_op=heads_by_op)
    median = statistics.median(times['total'])
    result.update(
        latency=dict(total=median,
                     backbone_neck=statistics.median(times['backbone_neck']),
                     heads=statistics.median(times['heads']),
                     runs=times['total'],
                     runs_backbone_neck=times['backbone_neck'],
                     runs_heads=times['heads']),
        fps=1.0 / median, peak_mem_mib=peak,
        peak_mem_kind='cuda_max_allocated' if cuda else 'cpu_rss_growth')
    ap = PUBLISHED_AP.get(result['config'])
    if ap is not None:
        result['published_ap'] = dict(ap)
    return result


def refresh_published_ap(result: dict) -> dict:
    """``result`` with ``published_ap`` set from :data:`PUBLISHED_AP`
    (removed when the config has none)."""
    result = dict(result)
    result.pop('published_ap', None)
    if result.get('config') in PUBLISHED_AP:
        result['published_ap'] = dict(PUBLISHED_AP[result['config']])
    return result


def run_child(config: str, args: argparse.Namespace) -> dict:
    """:func:`measure` in a fresh Python process; ``{'error': ...}`` if it
    fails."""
    cmd = [sys.executable, osp.abspath(__file__), config, '--child',
           '--img-size', *map(str, args.img_size), '--warmup',
           str(args.warmup), '--repeats', str(args.repeats), '--device',
           args.device, '--backend', args.backend, '--precision',
           args.precision] + (
               ['--no-flops'] if args.no_flops else [])
    env = dict(os.environ)
    if args.threads:
        cmd += ['--threads', str(args.threads)]
        env.update(OMP_NUM_THREADS=str(args.threads),
                   MKL_NUM_THREADS=str(args.threads))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK):])
    lines = (proc.stderr or proc.stdout).strip().splitlines()
    sys.stderr.write('\n'.join(lines[-20:]) + '\n')
    return dict(config=osp.splitext(osp.basename(config))[0],
                error=lines[-1] if lines else f'exit code {proc.returncode}')


# --------------------------------------------------------------- report ---
def _fmt(value: Optional[float], digits: int = 1) -> str:
    return '-' if value is None else f'{value:.{digits}f}'


def format_table(results: Sequence[dict], meta: dict) -> str:
    """Markdown report: header lines, main table, breakdown, notes."""
    lines = ["# Sparse R-CNN benchmark",
             '',
             f"- device: {meta['device']}",
             f"- threads: {meta['threads']}",
             f"- torch: {meta['torch']}",
             f"- input: 1x3x{meta['img_size'][0]}x{meta['img_size'][1]} "
             f"(batch 1), warm-up {meta['warmup']}, median of "
             f"{meta['repeats']} runs",
             '',
             '| config | backbone | proposals | params (M) | GFLOPs | '
             'backbone+neck ms | heads ms | total ms | FPS | peak mem (MiB) | '
             'COCO AP (published) |',
             '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|']
    rows = ['', '| config | params backbone / neck / heads (M) | '
            'GFLOPs backbone+neck / heads |', '|---|---|---|']
    for r in results:
        if 'error' in r:
            error = r['error'].replace('|', '/')[:200]
            lines.append(f"| {r['config']} | error: {error} |"
                         + ' |' * 9)
            continue
        p, lat, f = r['params'], r['latency'], r.get('flops')
        gflops = f and {k: v / 1e9 for k, v in f.items() if k != 'heads_by_op'}
        lines.append(
            f"| {r['config']} | {r['backbone']} | {r['proposals']} | "
            f"{p['total'] / 1e6:.1f} | {_fmt(gflops and gflops['total'])} | "
            f"{lat['backbone_neck'] * 1e3:.1f} | {lat['heads'] * 1e3:.1f} | "
            f"{lat['total'] * 1e3:.1f} | {r['fps']:.2f} | "
            f"{r['peak_mem_mib']:.0f} | {_ap_cell(r)} |")
        split = '-' if not gflops else \
            f"{gflops['backbone_neck']:.1f} / {gflops['heads']:.1f}"
        rows.append(f"| {r['config']} | {p['backbone'] / 1e6:.1f} / "
                    f"{p['neck'] / 1e6:.1f} / {p['heads'] / 1e6:.1f} | "
                    f"{split} |")
    notes = ['', f'- {FLOPS_NOTE}',
             f"- {MEM_NOTES['cuda' if 'cuda' in meta['device'] else 'cpu']}",
             '- backbone+neck ms, heads ms, total ms: medians over the runs; '
             'each run times `extract_feat`, then the RPN (learned '
             'proposals) + RoI heads, in one pass of `model.predict`, and '
             'its total is the sum of its two parts.']
    sources = []
    for r in results:
        ap = r.get('published_ap')
        if ap:
            note = f" ({ap['note']})" if ap.get('note') else ''
            sources.append(
                f"- {r['config']}: {_ap_cell(r)} — {ap['source']}{note}")
    if sources:
        sources = ['', 'Published COCO val2017 box AP (`*`: published for '
                   'another setting than the config\'s, see the note):',
                   ''] + sources
    return '\n'.join(lines + rows + notes + sources) + '\n'


def _ap_cell(result: dict) -> str:
    """The published AP of a result, ``*`` when for another setting."""
    ap = result.get('published_ap')
    if not ap:
        return '-'
    return f"{ap['ap']:.1f}" + ('' if ap.get('same_setting', True) else '*')


def pareto_front(points: Sequence[Tuple[float, float]]) -> List[int]:
    """Indices of the points ``(latency, accuracy)`` that no other point
    beats: none is at least as fast and as accurate and better in one of
    the two. Sorted by latency."""
    front = []
    for i, (lat, acc) in enumerate(points):
        dominated = any(
            lat2 <= lat and acc2 >= acc and (lat2 < lat or acc2 > acc)
            for j, (lat2, acc2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (points[i][0], -points[i][1]))


def label_points(fig, ax, xs: Sequence[float], ys: Sequence[float],
                 labels: Sequence[str], fontsize: float = 7) -> list:
    """Annotate data points with labels that overlap neither each other
    nor the points (:func:`mmdet_sparse.visualization.place_labels` in
    display pixels; a thin leader line joins a label set further away).

    The axes limits are frozen first, since the placement is in pixels.
    Returns the annotation artists.
    """
    from mmdet_sparse.visualization import place_labels
    ax.set_xlim(ax.get_xlim())
    ax.set_ylim(ax.get_ylim())
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    sizes = []
    for label in labels:
        probe = ax.text(0, 0, label, fontsize=fontsize)
        extent = probe.get_window_extent(renderer)
        sizes.append((extent.width, extent.height))
        probe.remove()
    points = ax.transData.transform(list(zip(xs, ys))) if len(xs) else []
    frame = ax.get_window_extent(renderer)
    boxes = place_labels([tuple(p) for p in points], sizes,
                         bounds=(frame.x0, frame.y0, frame.x1, frame.y1),
                         marker_radius=9.0)
    artists = []
    for (px, py), box, label, x, y in zip(points, boxes, labels, xs, ys):
        near = (box[0] - 12 <= px <= box[2] + 12
                and box[1] - 12 <= py <= box[3] + 12)
        artists.append(ax.annotate(
            label, (x, y), xytext=(box[0] - px, box[1] - py),
            textcoords='offset pixels', ha='left', va='bottom',
            fontsize=fontsize, annotation_clip=False,
            arrowprops=None if near else dict(
                arrowstyle='-', color='0.6', linewidth=0.6,
                shrinkA=0, shrinkB=3)))
    return artists


def _short(config: str) -> str:
    return config.replace('sparse_rcnn_', '')


def plot(results: Sequence[dict], path: str, dpi: int = 120) -> dict:
    """Latency vs parameters, vs GFLOPs, and published COCO AP vs latency
    (Pareto front marked), one labelled point per config.

    Returns:
        dict: Per panel title, ``(label, extent)`` of each label as drawn
        (extent: a display-space ``Bbox``), for checks.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    ok = [r for r in results if 'error' not in r]
    fig, axes = plt.subplots(1, 3, figsize=(18, 5.5), dpi=dpi)
    panels = [('params (M)', lambda r: r['params']['total'] / 1e6),
              ('GFLOPs', lambda r: r['flops']['total'] / 1e9
               if r.get('flops') else None)]
    placed = []
    for ax, (label, get) in zip(axes, panels):
        pts = [(get(r), r['latency']['total'] * 1e3, _short(r['config']))
               for r in ok if get(r) is not None]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=18)
        ax.set_xlabel(label)
        ax.set_ylabel('latency (ms)')
        ax.set_title(f'latency vs {label}')
        ax.grid(alpha=0.3)
        ax.margins(0.15)
        placed.append((ax, pts))

    ax = axes[2]
    with_ap = [r for r in ok if r.get('published_ap')]
    pts = [(r['latency']['total'] * 1e3, r['published_ap']['ap'],
            _short(r['config']) + ('' if r['published_ap'].get(
                'same_setting', True) else '*')) for r in with_ap]
    same = [r['published_ap'].get('same_setting', True) for r in with_ap]
    exact = [i for i, s in enumerate(same) if s]
    front = [exact[i] for i in pareto_front([pts[i][:2] for i in exact])]
    for filled in (True, False):
        idx = [i for i, s in enumerate(same) if s == filled]
        ax.scatter([pts[i][0] for i in idx], [pts[i][1] for i in idx], s=22,
                   facecolors='C0' if filled else 'none', edgecolors='C0',
                   label='AP published for this setting' if filled else
                   'AP published for another setting (*)')
    if front:
        ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front],
                color='C3', linewidth=1.2, marker='o', markersize=9,
                markerfacecolor='none', label='Pareto front', zorder=1)
    if not pts:
        ax.text(0.5, 0.5, 'no config with a published AP', ha='center',
                transform=ax.transAxes)
    ax.set_xlabel('latency (ms)')
    ax.set_ylabel('COCO val2017 box AP (published)')
    ax.set_title('accuracy vs latency')
    ax.grid(alpha=0.3)
    ax.margins(0.15)
    if pts:  # below the axes, clear of the points and their labels
        ax.legend(fontsize=7, loc='upper center', ncol=3, frameon=False,
                  bbox_to_anchor=(0.5, -0.12))
    placed.append((ax, pts))
    fig.tight_layout()
    artists = {}
    for ax, pts in placed:
        artists[ax.get_title()] = label_points(
            fig, ax, [p[0] for p in pts], [p[1] for p in pts],
            [p[2] for p in pts])
    fig.savefig(path, dpi=dpi)
    renderer = fig.canvas.get_renderer()
    drawn = {title: [(t.get_text(), t.get_window_extent(renderer))
                     for t in texts] for title, texts in artists.items()}
    plt.close(fig)
    return drawn


def write_report(results: Sequence[dict], meta: dict, out_dir: str) -> str:
    """Write ``benchmark.md``/``.json``/``.png`` to ``out_dir``; returns the
    markdown."""
    os.makedirs(out_dir, exist_ok=True)
    table = format_table(results, meta)
    with open(osp.join(out_dir, 'benchmark.md'), 'w') as f:
        f.write(table)
    with open(osp.join(out_dir, 'benchmark.json'), 'w') as f:
        json.dump(dict(meta=meta, results=list(results)), f, indent=2)
    plot(results, osp.join(out_dir, 'benchmark.png'))
    return table


# ------------------------------------------------------------------ CLI ---
def parse_args(argv=None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(
        description='Compare Sparse R-CNN configs: params, FLOPs, latency, '
        'peak memory')
    parser.add_argument('configs', nargs='*', help='config files')
    parser.add_argument('--from-json', metavar='JSON', default=None,
                        help='measure nothing: redraw benchmark.md/.png '
                        'into --out-dir from a benchmark.json written '
                        'before (published APs refreshed)')
    parser.add_argument('--img-size', type=int, nargs=2, default=[800, 1216],
                        metavar=('H', 'W'),
                        help='input size, multiples of 32 (default 800 1216)')
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--device', default='cpu', help='cpu or cuda[:N]')
    parser.add_argument('--backend',
                        choices=['pytorch', 'onnxruntime', 'openvino'],
                        default='pytorch',
                        help='onnxruntime / openvino: the exported ONNX '
                        'graph, CPU')
    parser.add_argument('--precision', choices=['fp32', 'bf16', 'int8'],
                        default='fp32',
                        help='ONNX backends: bf16 (openvino, CPUs with '
                        'bfloat16 instructions) or int8 (the quantized '
                        'graph)')
    parser.add_argument('--threads', type=int, default=None,
                        help='CPU threads (default: torch default)')
    parser.add_argument('--out-dir', default='work_dirs/benchmark')
    parser.add_argument('--no-flops', action='store_true',
                        help='skip the FLOP count')
    parser.add_argument('--child', action='store_true',
                        help=argparse.SUPPRESS)  # internal: one config
    return parser.parse_args(argv)


def main(argv=None) -> int:
    """Entry point; returns 1 if a config failed."""
    args = parse_args(argv)
    if args.from_json:
        with open(args.from_json) as f:
            saved = json.load(f)
        results = [refresh_published_ap(r) for r in saved['results']]
        print(write_report(results, saved['meta'], args.out_dir))
        return int(any('error' in r for r in results))
    if not args.configs:
        raise SystemExit('benchmark.py: give config files (or --from-json)')
    if args.child:
        result = measure(args.configs[0], args.img_size, args.warmup,
                         args.repeats, args.device, args.threads,
                         not args.no_flops, args.backend, args.precision)
        print(RESULT_MARK + json.dumps(result), flush=True)
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    if device.startswith('cuda') and torch.cuda.is_available():
        device = f'{device} ({torch.cuda.get_device_name(device)})'
    if args.backend != 'pytorch':
        if not device.startswith('cpu'):
            raise SystemExit(f'--backend {args.backend} runs on --device '
                             'cpu')
        import importlib
        version = importlib.import_module(args.backend).__version__
        device = f'{device}, {args.backend} {version}, {args.precision}'
    elif args.precision != 'fp32':
        raise SystemExit(f'--precision {args.precision} needs --backend '
                         'onnxruntime or openvino')
    meta = dict(device=device, threads=args.threads or torch.get_num_threads(),
                torch=torch.__version__, img_size=list(args.img_size),
                warmup=args.warmup, repeats=args.repeats,
                flops_note=FLOPS_NOTE)
    results = []
    for config in args.configs:
        print(f'measuring {config} ...', file=sys.stderr, flush=True)
        results.append(run_child(config, args))
    print(write_report(results, meta, args.out_dir))
    return int(any('error' in r for r in results))


if __name__ == '__main__':
    sys.exit(main())
