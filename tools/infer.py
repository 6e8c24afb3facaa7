"""Run a trained Sparse R-CNN on an image, a folder of images or a video.

Example::

    python tools/infer.py CONFIG CHECKPOINT demo.jpg --out-dir outputs/demo

Writes the drawn images (or the drawn video) to ``OUT_DIR/vis/`` and every
predicted box, whatever its score, to ``OUT_DIR/results.json`` in COCO
result format; a model with masks (QueryInst) also draws them and writes
each as compressed RLE (``segmentation``). ``--score-thr`` only decides
which boxes are drawn.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmdet_sparse.apis import (build_inferencer, collect_inputs,  # noqa: E402
                               default_device, run_inference)


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(
        description='Sparse R-CNN inference on images or a video')
    parser.add_argument('config', help='model config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        'input', help='an image file, a folder of images or a video file')
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
    return parser.parse_args(argv)


def main(argv=None) -> None:
    """Entry point."""
    args = parse_args(argv)
    inputs = collect_inputs(args.input)
    device = args.device or default_device()
    inferencer = build_inferencer(args.config, args.checkpoint, device)
    out = run_inference(inferencer, inputs, args.out_dir, args.score_thr)
    what = 'video' if inputs.kind == 'video' else \
        f'{len(inputs.files)} image(s)'
    print(f'Ran on {what} from {inputs.source} ({device})')
    print(f'Drawn results (score >= {args.score_thr}): {out["vis_dir"]}')
    print(f'All {out["num_records"]} boxes (COCO json): '
          f'{out["results_file"]}')


if __name__ == '__main__':
    main()
