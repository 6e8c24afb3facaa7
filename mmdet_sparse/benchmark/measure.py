"""Measuring one config: FLOPs, latency (backbone+neck and heads within
each run), peak memory, and the machine's load around the measurements.

See ``tools/benchmark.py`` for what each figure means.
"""
import ctypes
import gc
import os
import os.path as osp
import resource
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from .model import (backbone_label, build_model, count_params, make_inputs,
                    onnx_runner, run_heads)
from .published import PUBLISHED_AP


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


def predict_in_parts(model: torch.nn.Module, inputs: torch.Tensor,
                     samples: list,
                     sync: Callable[[], None] = lambda: None
                     ) -> Tuple[float, float, list]:
    """``model.predict(inputs, samples)`` as its two parts, each timed.

    Runs what ``TwoStageDetector.predict`` runs: ``extract_feat``, the RPN
    and RoI heads (:func:`~.model.run_heads`), ``add_pred_to_datasample``.

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


def time_parts(model: torch.nn.Module, inputs: torch.Tensor, samples: list,
               repeats: int,
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


def measure_config(config: str,
                   img_size: Sequence[int] = (800, 1216),
                   warmup: int = 1,
                   repeats: int = 3,
                   device: str = 'cpu',
                   threads: Optional[int] = None,
                   flops: bool = True,
                   backend: str = 'pytorch',
                   precision: str = 'fp32') -> dict:
    """Measure one config in this process (see ``tools/benchmark.py``):
    the result's ``params``, ``flops``, ``latency``, ``fps``,
    ``peak_mem_mib`` and, where one exists, ``published_ap``."""
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


# ------------------------------------------------------------ machine load ---
def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity; ``os.cpu_count()``
    where affinity is not available)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def check_load(when: str) -> dict:
    """The 1-minute load average against the usable cores, at ``when``
    (``'start'`` or ``'end'``) of the measurements.

    Returns:
        dict: ``when``, ``load`` (``None`` where the system does not report
        it), ``cores`` and ``warning``: a sentence naming both numbers when
        the load exceeds the cores (the timings may be inflated by other
        work), else ``None``.
    """
    cores = usable_cores()
    try:
        load: Optional[float] = float(os.getloadavg()[0])
    except (AttributeError, OSError):
        load = None
    warning = None
    if load is not None and load > cores:
        warning = (f'load average {load:.2f} at the {when} of the '
                   f'measurements exceeds the {cores} usable cores: the '
                   'timings may be inflated by other work on this machine')
    return dict(when=when, load=load, cores=cores, warning=warning)


def load_record(checks: Sequence[dict]) -> dict:
    """The report's ``load_average`` entry from :func:`check_load` results:
    ``cores``, the load per ``when`` and the list of ``warnings``."""
    record: dict = dict(cores=checks[0]['cores'] if checks else usable_cores())
    for check in checks:
        record[check['when']] = check['load']
    record['warnings'] = [c['warning'] for c in checks if c['warning']]
    return record


# ------------------------------------------------------ interleaved rounds ---
def round_orders(configs: Sequence[str], rounds: int) -> List[List[str]]:
    """The order of the configs in each of ``rounds`` interleaved rounds:
    the given order, then reversed, alternating, so that a slow drift of
    the machine's speed does not favour the configs measured first."""
    if rounds < 1:
        raise ValueError(f'rounds must be at least 1, got {rounds}')
    return [list(configs) if r % 2 == 0 else list(reversed(configs))
            for r in range(rounds)]


def merge_rounds(measured: Sequence[dict]) -> dict:
    """One config's results from several rounds (each a
    :func:`measure_config` result, FLOPs counted in the first) as one.

    The timed runs of all rounds are pooled: ``latency`` holds the medians
    over all runs and ``round_totals`` the median total of each round (the
    spread between rounds shows the machine's drift); ``peak_mem_mib`` is
    the median over the rounds. A round that failed makes the config an
    error naming that round.
    """
    if not measured:
        raise ValueError('merge_rounds needs at least one result')
    for i, r in enumerate(measured):
        if 'error' in r:
            return dict(r, error=f"round {i + 1}: {r['error']}")
    merged = dict(measured[0])
    for r in measured[1:]:
        if 'flops' not in merged and 'flops' in r:
            merged['flops'] = r['flops']
    runs = {part: [t for r in measured for t in r['latency'][key]]
            for part, key in (('total', 'runs'),
                              ('backbone_neck', 'runs_backbone_neck'),
                              ('heads', 'runs_heads'))}
    median = statistics.median(runs['total'])
    merged['latency'] = dict(
        total=median,
        backbone_neck=statistics.median(runs['backbone_neck']),
        heads=statistics.median(runs['heads']),
        runs=runs['total'], runs_backbone_neck=runs['backbone_neck'],
        runs_heads=runs['heads'],
        round_totals=[r['latency']['total'] for r in measured])
    merged['fps'] = 1.0 / median
    merged['peak_mem_mib'] = statistics.median(
        r['peak_mem_mib'] for r in measured)
    merged['rounds'] = len(measured)
    return merged
