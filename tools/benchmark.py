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
  (``torch.cuda.synchronize()`` before each clock read on CUDA). With
  ``--rounds R`` every config is measured R times in fresh processes,
  interleaved (the configs in order, then reversed, ...), and the medians
  pool the runs of all rounds; ``round_totals`` in ``benchmark.json`` keeps
  each round's median, so drift of the machine shows. The report is
  rewritten after every round (temp file, then rename), so an interrupted
  run keeps the rounds it completed (``rounds`` in the report says how
  many). Each run
  is one prediction (what ``model.predict`` runs) with a clock read between
  its parts: backbone+neck (``model.extract_feat``) and heads (RPN, i.e. the
  learned proposals, and RoI heads). A run's total is the sum of its parts,
  so no median part exceeds the median total.
* Accuracy: the published COCO val2017 box AP of a config, where one exists
  (``PUBLISHED_AP`` of :mod:`mmdet_sparse.benchmark.published`, each with
  its source); ``benchmark.png`` plots it
  against latency and marks the Pareto front (no other config is both
  faster and more accurate). An AP published for a different setting than
  the config's (backbone variant, proposals) is drawn hollow, marked ``*``,
  and left out of the front.
* Peak memory: on CUDA ``torch.cuda.max_memory_allocated()`` during the timed
  runs (weights included); on the CPU the growth of the process peak RSS
  during the timed runs over the RSS before them, after the allocator's
  unused memory is returned to the system (activations and workspaces; the
  weights are excluded).
* Load: the 1-minute load average is compared with the usable cores at the
  start and at the end of the measurements; above them, a warning naming
  both numbers is printed (the timings may be inflated by other work) and
  kept in the report (``load_average`` in ``benchmark.json``).

The measuring, the published APs, the report and the chart live in
:mod:`mmdet_sparse.benchmark`; this file parses the command line and runs
each config in its own process.
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)

import torch  # noqa: E402

RESULT_MARK = 'BENCHMARK_RESULT '


def run_child(config: str, args: argparse.Namespace,
              flops: bool = True) -> dict:
    """:func:`~mmdet_sparse.benchmark.measure_config` in a fresh Python
    process; ``{'error': ...}`` if it fails. ``flops=False`` skips the
    FLOP count (rounds after the first)."""
    cmd = [sys.executable, osp.abspath(__file__), config, '--child',
           '--img-size', *map(str, args.img_size), '--warmup',
           str(args.warmup), '--repeats', str(args.repeats), '--device',
           args.device, '--backend', args.backend, '--precision',
           args.precision] + (
               ['--no-flops'] if args.no_flops or not flops else [])
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


def _load_check(when: str) -> dict:
    """:func:`~mmdet_sparse.benchmark.check_load`, its warning printed to
    stderr."""
    from mmdet_sparse.benchmark import check_load
    check = check_load(when)
    if check['warning']:
        print(f"benchmark.py: warning: {check['warning']}", file=sys.stderr,
              flush=True)
    return check


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
    parser.add_argument('--rounds', type=int, default=1,
                        help='measure every config this many times, '
                        'interleaved (the list, then reversed, ...), each '
                        'in a fresh process; medians pool all rounds')
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
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f'--rounds must be at least 1, got {args.rounds}')
    return args


def main(argv=None) -> int:
    """Entry point; returns 1 if a config failed."""
    args = parse_args(argv)
    # the library imports the package (its registries): not for --help
    from mmdet_sparse.benchmark import (FLOPS_NOTE, load_record,
                                        measure_config, merge_rounds,
                                        refresh_published_ap, round_orders,
                                        write_report)
    if args.from_json:
        with open(args.from_json) as f:
            saved = json.load(f)
        results = [refresh_published_ap(r) for r in saved['results']]
        print(write_report(results, saved['meta'], args.out_dir))
        return int(any('error' in r for r in results))
    if not args.configs:
        raise SystemExit('benchmark.py: give config files (or --from-json)')
    if args.child:
        result = measure_config(
            args.configs[0], args.img_size, args.warmup, args.repeats,
            args.device, args.threads, not args.no_flops, args.backend,
            args.precision)
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
                flops_note=FLOPS_NOTE, rounds_planned=args.rounds)
    checks = [_load_check('start')]
    measured = {config: [] for config in args.configs}
    for r, order in enumerate(round_orders(args.configs, args.rounds)):
        for config in order:
            which = f' (round {r + 1}/{args.rounds})' if args.rounds > 1 \
                else ''
            print(f'measuring {config}{which} ...', file=sys.stderr,
                  flush=True)
            measured[config].append(run_child(config, args, flops=r == 0))
        if r + 1 < args.rounds:  # the rounds so far, should a later one
            # be interrupted (replaced by the next round's report)
            meta['rounds'] = r + 1
            meta['load_average'] = load_record(checks)
            write_report([merge_rounds(measured[c]) for c in args.configs],
                         meta, args.out_dir)
            print(f'report of rounds 1-{r + 1} of {args.rounds} written to '
                  f'{args.out_dir}', file=sys.stderr, flush=True)
    results = [merge_rounds(measured[c]) for c in args.configs]
    meta['rounds'] = args.rounds
    checks.append(_load_check('end'))
    meta['load_average'] = load_record(checks)
    print(write_report(results, meta, args.out_dir))
    return int(any('error' in r for r in results))


if __name__ == '__main__':
    sys.exit(main())
