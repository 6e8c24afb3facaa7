"""Run a trained Sparse R-CNN on an image, a folder of images or a video.

Example::

    python tools/infer.py CONFIG CHECKPOINT demo.jpg --out-dir outputs/demo
    python tools/infer.py --backend onnxruntime MODEL.onnx demo.jpg
    python tools/infer.py --backend openvino MODEL.onnx demo.jpg

Writes the drawn images (or the drawn video) to ``OUT_DIR/vis/`` and every
predicted box, whatever its score, to ``OUT_DIR/results.json`` in COCO
result format; a model with masks (QueryInst) also draws them and writes
each as compressed RLE (``segmentation``). ``--score-thr`` only decides
which boxes are drawn.

Exit status 0 when every input was processed; 3 when a video ended before
the frame count of its container (cut short or damaged): the results of the
frames read are written, and a warning says how many of how many.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmdet_sparse.apis import (build_inferencer, collect_inputs,  # noqa: E402
                               default_device, run_inference)
from mmdet_sparse.utils.checkpoint_url import resolve_checkpoint  # noqa: E402,E501

#: Exit status of a run whose video ended early (results are partial).
EXIT_INCOMPLETE = 3


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(
        description='Sparse R-CNN inference on images or a video')
    parser.add_argument('config', help='model config file (with '
                        '--backend onnxruntime|openvino: the .onnx file)')
    parser.add_argument('checkpoint', help='checkpoint file or http(s) URL '
                        '(with --backend onnxruntime|openvino: the input)')
    parser.add_argument(
        'input', nargs='?',
        help='an image file, a folder of images or a video file')
    parser.add_argument(
        '--backend', choices=['pytorch', 'onnxruntime', 'openvino'],
        default='pytorch',
        help='pytorch: CONFIG CHECKPOINT INPUT; onnxruntime or openvino: '
        'MODEL.onnx INPUT, a file from tools/deployment/export_onnx.py')
    parser.add_argument(
        '--out-dir', default='outputs', help='folder for vis/ and '
        'results.json (default: outputs)')
    parser.add_argument(
        '--device', default=None, help='device, e.g. cpu or cuda:0 '
        '(default: cuda when available, else cpu)')
    parser.add_argument(
        '--score-thr', type=float, default=0.3,
        help='minimum score of the drawn boxes; results.json keeps all '
        '(default: 0.3)')
    parser.add_argument(
        '--threads', type=int, default=None,
        help='CPU threads (ONNX Runtime / OpenVINO intra-op threads, or '
        "torch's; default: the backend's)")
    parser.add_argument(
        '--precision', choices=['fp32', 'bf16'], default='fp32',
        help='bf16: --backend openvino on a CPU with bfloat16 '
        'instructions (an int8 file needs no option)')
    args = parser.parse_args(argv)
    if args.precision != 'fp32' and args.backend == 'pytorch':
        parser.error(f'--precision {args.precision} needs --backend '
                     'openvino')
    if args.backend != 'pytorch':
        if args.input is not None:
            parser.error(f'--backend {args.backend} takes MODEL.onnx INPUT')
        args.input, args.checkpoint = args.checkpoint, None
    elif args.input is None:
        parser.error('the following arguments are required: input')
    return args


def main(argv=None) -> None:
    """Entry point."""
    args = parse_args(argv)
    inputs = collect_inputs(args.input)
    if args.backend != 'pytorch':
        from mmdet_sparse.deploy import OnnxInferencer
        device = f'cpu, {args.backend}'
        inferencer = OnnxInferencer(args.config, args.threads,
                                    backend=args.backend,
                                    precision=args.precision)
    else:
        if args.threads:
            import torch
            torch.set_num_threads(args.threads)
        device = args.device or default_device()
        inferencer = build_inferencer(
            args.config, resolve_checkpoint(args.checkpoint), device)
    out = run_inference(inferencer, inputs, args.out_dir, args.score_thr)
    if inputs.kind == 'video':
        what = f'{out["num_frames"]} frame(s) of the video'
    else:
        what = f'{len(inputs.files)} image(s)'
    print(f'Ran on {what} from {inputs.source} ({device})')
    print(f'Drawn results (score >= {args.score_thr}): {out["vis_dir"]}')
    print(f'All {out["num_records"]} boxes (COCO json): '
          f'{out["results_file"]}')
    if out['incomplete']:
        # Partial results are kept (they may have taken hours), but the run
        # did not do what was asked: say so and fail, so scripts notice.
        print(f'WARNING: {out["incomplete"]}', file=sys.stderr)
        sys.exit(EXIT_INCOMPLETE)


if __name__ == '__main__':
    main()
