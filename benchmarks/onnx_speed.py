"""Whole-detector latency and parity: the exported ONNX graph in ONNX
Runtime (and OpenVINO, float32) against this package's PyTorch eager model
and MMDetection's own Sparse R-CNN, batch 1, on the CPU.

    # R50-FPN at 800x1216, 100 and 300 proposals, with MMDetection's model
    python benchmarks/onnx_speed.py r50 --proposals 100 300
    # every backbone config at 512x768 (exports / parity / latency)
    python benchmarks/onnx_speed.py configs --img-size 512 768
    # also the int8 file (both runtimes) and OpenVINO in bfloat16
    python benchmarks/onnx_speed.py r50 --proposals 100 300 --int8 --bf16

All implementations share the same random weights (the heads'
``init_weights``; proposal boxes of varied position and size, as a trained
model has, so that RoIs fall on every pyramid level) and the same random,
already normalised input; their runs alternate within one process and the
median of ``--repeats`` runs after one warm-up run is reported. The graph is
exported at the fixed input size. Parity compares the ONNX Runtime top-k
with the eager model's: the (proposal, label) pairs (ties at the k-th score
aside), the largest score and box differences.

``--int8`` adds the graph quantized by ``mmdet_sparse.deploy.quantize``
(calibrated on the one random input: a speed figure only) in both runtimes,
``--bf16`` OpenVINO with ``INFERENCE_PRECISION_HINT=bf16``; both alternate
with the others and are reported as the median over the rounds of their
time over the same runtime's float32 time in that round (robust to a
machine shared with other work).

The FLOP bound is the model's multiply-add FLOPs (``FlopCounterMode``, as in
``tools/benchmark.py``) divided by this machine's measured float32 matrix
product rate with the same threads.
"""
import argparse
import glob
import json
import os
import os.path as osp
import statistics
import sys
import time
import traceback
import warnings
from typing import Dict, List, Optional

import numpy as np
import torch

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)
R50 = osp.join(REPO, 'configs', 'sparse_rcnn_r50_fpn_1x_coco.py')


def spread_boxes(num: int, seed: int = 1) -> torch.Tensor:
    """``(num, 4)`` normalised ``(cx, cy, w, h)``, sides log-uniform from
    2 % to 70 % of the image."""
    gen = torch.Generator().manual_seed(seed)
    centre = torch.rand(num, 2, generator=gen)
    low, high = np.log(0.02), np.log(0.7)
    side = torch.exp(torch.rand(num, 2, generator=gen) * (high - low) + low)
    return torch.cat([centre, side], 1)


def build_ours(config: str, num_proposals: Optional[int]):
    """Our eval-mode detector with initialised random weights."""
    from mmengine.config import Config

    from mmdet_sparse.deploy import build_detector
    cfg = Config.fromfile(config)
    if num_proposals:
        cfg.model.rpn_head.num_proposals = num_proposals
        cfg.model.test_cfg.rcnn.max_per_img = num_proposals
    torch.manual_seed(0)
    model, cfg = build_detector(cfg)
    model.init_weights()
    with torch.no_grad():
        model.rpn_head.init_proposal_bboxes.weight.copy_(
            spread_boxes(model.rpn_head.num_proposals))
    return model.eval(), cfg


def build_mmdet(state_dict: dict, num_proposals: int):
    """MMDetection 3.3's Sparse R-CNN R50-FPN with ``state_dict``."""
    import mmdet
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    cfg = Config.fromfile(osp.join(
        osp.dirname(mmdet.__file__), '.mim', 'configs', 'sparse_rcnn',
        'sparse-rcnn_r50_fpn_1x_coco.py')).model
    cfg.backbone.init_cfg = None
    cfg.rpn_head.num_proposals = num_proposals
    cfg.test_cfg.rcnn.max_per_img = num_proposals
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg)
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


def sample_of(h: int, w: int):
    from mmdet.structures import DetDataSample
    return DetDataSample(metainfo=dict(
        img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
        batch_input_shape=(h, w), scale_factor=(1.0, 1.0)))


def parity(ort_out, ref) -> Dict:
    """Pairs, score and box differences of two top-k results."""
    from mmdet_sparse.deploy import compare_detections
    res = compare_detections(*ort_out, ref.bboxes.numpy(),
                             ref.scores.numpy(), ref.labels.numpy())
    res['ok'] = bool(res['missing'] == 0 and res['max_score_diff'] <= 1e-4
                     and res['max_box_diff'] <= 0.1)
    return res


def gemm_rate(threads: int, size: int = 1024, repeats: int = 20) -> float:
    """Float32 matrix product FLOP/s with ``threads`` threads (best run)."""
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = float('inf')
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def measure(config: str, img_size, num_proposals: Optional[int],
            repeats: int, threads: int, with_mmdet: bool,
            opset: int, model_dir: str, export_only: bool = False,
            with_openvino: bool = True, int8: bool = False,
            bf16: bool = False) -> Dict:
    """Export (or reuse the export in ``model_dir``), parity and
    interleaved latency of one config."""
    from mmdet_sparse.deploy import OnnxDetector, export_onnx
    torch.set_num_threads(threads)
    name = osp.splitext(osp.basename(config))[0]
    row = dict(config=name, img_size=list(img_size),
               proposals=num_proposals)
    model, cfg = build_ours(config, num_proposals)
    row['proposals'] = int(model.rpn_head.num_proposals)
    h, w = img_size
    gen = torch.Generator().manual_seed(0)
    image = torch.randn(1, 3, h, w, generator=gen)
    samples = [sample_of(h, w)]
    path = osp.join(model_dir, f"{name}_{row['proposals']}_{h}x{w}"
                    f'_opset{opset}.onnx')
    info = path[:-5] + '.json'
    if osp.isfile(path) and osp.isfile(info):
        with open(info) as f:
            row.update(json.load(f))
    else:
        start = time.perf_counter()
        try:
            export_onnx(cfg, None, path, opset=opset, img_size=(h, w),
                        model=model)
            row['export'] = 'ok'
            row['export_s'] = time.perf_counter() - start
        except Exception as exc:  # reported in the table
            row['export'] = f'{type(exc).__name__}: {exc}'[:400]
        from mmdet_sparse.engine.checkpoint_hook import write_atomically
        write_atomically(info, lambda f: json.dump(
            {k: row[k] for k in ('export', 'export_s') if k in row}, f), 'w')
    if row['export'] != 'ok' or export_only:
        return row
    row['onnx_mib'] = osp.getsize(path) / 2**20
    detector = OnnxDetector(path, threads)
    img_np = image.numpy()
    size_np = np.array([h, w], np.int64)
    impls = {
        'onnxruntime': lambda: detector.run(img_np, size_np),
        'eager': lambda: model.predict(image, samples, rescale=True),
    }
    if with_openvino:
        try:
            ov_detector = OnnxDetector(path, threads, backend='openvino')
            impls['openvino'] = lambda: ov_detector.run(img_np, size_np)
        except ValueError as exc:  # refused backbone: shown in the table
            row['openvino'] = f'refused: {exc}'
            with_openvino = False
    if int8:
        int8_path = path[:-5] + '_int8.onnx'
        if not osp.isfile(int8_path):
            from mmdet_sparse.deploy.quantize import (InputsReader,
                                                      quantize_model)
            quantize_model(path, int8_path, InputsReader(
                [dict(image=img_np, image_size=size_np)]))
        q_ort = OnnxDetector(int8_path, threads)
        impls['onnxruntime_int8'] = lambda: q_ort.run(img_np, size_np)
        if with_openvino:
            q_ov = OnnxDetector(int8_path, threads, backend='openvino')
            impls['openvino_int8'] = lambda: q_ov.run(img_np, size_np)
    if bf16 and with_openvino:
        bf_ov = OnnxDetector(path, threads, backend='openvino',
                             precision='bf16')
        impls['openvino_bf16'] = lambda: bf_ov.run(img_np, size_np)
    if with_mmdet:
        ref = build_mmdet(model.state_dict(), row['proposals'])
        impls['mmdet'] = lambda: ref.predict(image, samples, rescale=True)
    with torch.no_grad():
        ort_out = impls['onnxruntime']()
        eager_out = impls['eager']()[0].pred_instances
        row['parity'] = parity(ort_out, eager_out)
        if with_openvino:
            row['parity_openvino'] = parity(impls['openvino'](), eager_out)
        # PyTorch against itself on the input with relative noise 1e-6:
        # how far float rounding alone moves this model's top-k
        noisy = image * (1 + 1e-6 * torch.randn(image.shape, generator=gen))
        noisy_out = model.predict(noisy, samples, rescale=True)[0]
        noisy_out = noisy_out.pred_instances
        row['eager_noise'] = parity(
            (noisy_out.bboxes.numpy(), noisy_out.scores.numpy(),
             noisy_out.labels.numpy()), eager_out)
        for key in ('mmdet', 'onnxruntime_int8', 'openvino_int8',
                    'openvino_bf16'):
            if key in impls:  # warm-up
                impls[key]()
        times = {k: [] for k in impls}
        for _ in range(repeats):
            for key, fn in impls.items():
                start = time.perf_counter()
                fn()
                times[key].append(time.perf_counter() - start)
    row['latency_s'] = {k: statistics.median(v) for k, v in times.items()}
    row['runs_s'] = times
    lat = row['latency_s']
    row['ratio_vs_eager'] = lat['onnxruntime'] / lat['eager']
    if with_mmdet:
        row['ratio_vs_mmdet'] = lat['onnxruntime'] / lat['mmdet']
    for key in ('onnxruntime_int8', 'openvino_int8', 'openvino_bf16'):
        if key in lat:  # over the same runtime's float32 of the same round
            row[f'{key}_vs_fp32'] = statistics.median(
                a / b for a, b in zip(times[key], times[key.split('_')[0]]))
    if with_openvino:
        row['openvino_vs_eager'] = lat['openvino'] / lat['eager']
        if with_mmdet:
            row['openvino_vs_mmdet'] = lat['openvino'] / lat['mmdet']
    return row


def flops_of(config: str, img_size, num_proposals: Optional[int]) -> float:
    """Multiply-add FLOPs (x2) of the eager model on one input."""
    from mmdet_sparse.benchmark import count_flops
    model, _ = build_ours(config, num_proposals)
    h, w = img_size
    image = torch.randn(1, 3, h, w)
    with torch.no_grad():
        total, _ = count_flops(
            lambda: model.predict(image, [sample_of(h, w)]))
    return float(total)


def _pairs(p: Dict) -> str:
    return (f"{'yes' if p['ok'] else 'NO'} ({p['matched']}/{p['k']}, "
            f"{p['max_score_diff']:.1e}, {p['max_box_diff']:.3f} px)")


def _ratios(r: Dict, vs_eager: str, vs_mmdet: str) -> str:
    return f'{r[vs_eager]:.2f}' + (f' / {r[vs_mmdet]:.2f}'
                                    if vs_mmdet in r else '')


def fmt_row(r: Dict) -> str:
    if r.get('export') != 'ok':
        return (f"| {r['config']} | {r['proposals']} | "
                f"refused: {r.get('export', r.get('error'))} "
                '| | | | | | | |')
    lat = r['latency_s']
    mm, ov = lat.get('mmdet'), lat.get('openvino')
    return (f"| {r['config']} | {r['proposals']} | ok ({r['export_s']:.0f} s)"
            f" | {_pairs(r['parity'])} | {lat['onnxruntime']:.3f} | "
            f"{'-' if ov is None else f'{ov:.3f}'} | {lat['eager']:.3f} | "
            f"{'-' if mm is None else f'{mm:.3f}'} | "
            f"{_ratios(r, 'ratio_vs_eager', 'ratio_vs_mmdet')} | "
            + (('refused' if 'openvino' in r else '-') if ov is None else
               _ratios(r, 'openvino_vs_eager', 'openvino_vs_mmdet'))
            + ' |')


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('what', choices=['r50', 'configs'])
    parser.add_argument('--configs', nargs='*', default=None,
                        help='configs for "configs" (default: configs/*.py)')
    parser.add_argument('--img-size', type=int, nargs=2, default=None)
    parser.add_argument('--proposals', type=int, nargs='*',
                        default=[100, 300])
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--opset', type=int, default=18)
    parser.add_argument('--no-flops', action='store_true')
    parser.add_argument('--out', default='work_dirs/onnx_speed')
    parser.add_argument('--no-openvino', action='store_true',
                        help='time ONNX Runtime only')
    parser.add_argument('--int8', action='store_true',
                        help='also time the int8 file (both runtimes)')
    parser.add_argument('--bf16', action='store_true',
                        help='also time OpenVINO in bfloat16')
    parser.add_argument('--export-only', action='store_true',
                        help='only export (into OUT/models) for later runs')
    args = parser.parse_args(argv)
    warnings.filterwarnings('ignore')
    import onnxruntime
    model_dir = osp.join(args.out, 'models')
    os.makedirs(model_dir, exist_ok=True)
    rows: List[Dict] = []
    if args.what == 'r50':
        size = args.img_size or [800, 1216]
        jobs = [(R50, n, True) for n in args.proposals]
    else:
        size = args.img_size or [512, 768]
        configs = args.configs or sorted(
            glob.glob(osp.join(REPO, 'configs', '*.py')))
        jobs = [(c, None, False) for c in configs]
    rate = 0.0 if args.export_only else gemm_rate(args.threads)
    for config, num, with_mmdet in jobs:
        print(f'{osp.basename(config)} proposals={num} ...', flush=True)
        try:
            row = measure(config, size, num, args.repeats, args.threads,
                          with_mmdet, args.opset, model_dir,
                          args.export_only, not args.no_openvino,
                          args.int8, args.bf16)
        except Exception as exc:
            traceback.print_exc()
            row = dict(config=osp.splitext(osp.basename(config))[0],
                       proposals=num, error=f'{type(exc).__name__}: {exc}')
        if args.export_only:
            print(json.dumps(row), flush=True)
            continue
        if args.what == 'r50' and not args.no_flops and 'latency_s' in row:
            row['gflops'] = flops_of(config, size, num) / 1e9
            row['flop_bound_s'] = row['gflops'] * 1e9 / rate
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.export_only:
        return 0
    lines = [f'- onnxruntime {onnxruntime.__version__}, torch '
             f'{torch.__version__}, {args.threads} threads, input '
             f'{size[0]}x{size[1]}, batch 1, median of {args.repeats} '
             'interleaved runs after one warm-up; float32 matmul rate '
             f'{rate / 1e9:.0f} GFLOP/s',
             '',
             '| config | proposals | export | ORT parity (pairs, max score '
             'diff, max box diff) | ONNX Runtime s | OpenVINO s | eager s | '
             'MMDetection s | ORT / eager (/ MMDet) | OpenVINO / eager '
             '(/ MMDet) |',
             '|---|---:|---|---|---:|---:|---:|---:|---:|---:|']
    lines += [fmt_row(r) for r in rows]
    lines += ['', 'OpenVINO against eager (pairs, max score diff, max box '
              'diff): ' + '; '.join(
                  f"{r['config']} {r['proposals']}: "
                  f"{_pairs(r['parity_openvino'])}"
                  for r in rows if 'parity_openvino' in r)]
    low = [r for r in rows if any(k.endswith('_vs_fp32') for k in r)]
    if low:
        lines += ['', 'int8 and bf16: median over the rounds of the time '
                  'over the same runtime\'s float32 time in that round:', '',
                  '| config | proposals | ORT int8 s | ORT int8 / fp32 | '
                  'OpenVINO int8 s | OpenVINO int8 / fp32 | OpenVINO bf16 s '
                  '| OpenVINO bf16 / fp32 |', '|---|---:' + '|---:' * 6 + '|']
        for r in low:
            cells = []
            for key in ('onnxruntime_int8', 'openvino_int8', 'openvino_bf16'):
                t = r['latency_s'].get(key)
                cells += ['-', '-'] if t is None else [
                    f'{t:.3f}', f"**{r[f'{key}_vs_fp32']:.2f}**"]
            lines.append(f"| {r['config']} | {r['proposals']} | "
                         + ' | '.join(cells) + ' |')
    lines += ['', 'PyTorch eager against itself with input noise 1e-6 '
              '(relative): the size of float-rounding effects on the top-k '
              'of these random-weight models:', '',
              '| config | proposals | pairs | max score diff | max box diff '
              '|', '|---|---:|---|---:|---:|']
    for r in rows:
        n = r.get('eager_noise')
        if n:
            lines.append(f"| {r['config']} | {r['proposals']} | "
                         f"{n['matched']}/{n['k']} | "
                         f"{n['max_score_diff']:.1e} | "
                         f"{n['max_box_diff']:.3f} px |")
    for r in rows:
        if 'flop_bound_s' in r:
            lines.append(
                f"\n- {r['config']} {r['proposals']} proposals: "
                f"{r['gflops']:.0f} GFLOPs, FLOP bound "
                f"{r['flop_bound_s']:.2f} s; ONNX Runtime "
                f"{r['latency_s']['onnxruntime'] / r['flop_bound_s']:.1f}x "
                'the bound')
    table = '\n'.join(lines) + '\n'
    from mmdet_sparse.engine.checkpoint_hook import write_atomically
    write_atomically(osp.join(args.out, f'{args.what}.md'),
                     lambda f: f.write(table), 'w')
    write_atomically(osp.join(args.out, f'{args.what}.json'),
                     lambda f: json.dump(dict(rows=rows, gemm_flops=rate),
                                         f, indent=1), 'w')
    print(table)
    return 0


if __name__ == '__main__':
    sys.exit(main())
