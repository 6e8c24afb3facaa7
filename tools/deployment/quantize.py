"""Post-training int8 quantization of an exported Sparse R-CNN ONNX file.

Example::

    python tools/deployment/quantize.py configs/CONFIG.py model.onnx \\
        --out model_int8.onnx --split train --num-images 200

Calibrates on ``--num-images`` images spread over the ``--split`` split of
the config's dataset (preprocessed as the runtime does, from the model's
metadata) and writes a QDQ int8 graph with the export metadata carried
over (``quantization: int8``): ``tools/infer.py``,
``tools/deployment/test_onnx.py`` and ``OnnxDetector`` run it like the
float32 file. See ``docs/deployment.md`` ("int8 and bf16").
"""
import argparse
import os.path as osp
import sys
import time
import warnings

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line arguments."""
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(
        description='Static int8 quantization of an exported Sparse R-CNN')
    parser.add_argument('config', help='config naming the calibration '
                        'dataset')
    parser.add_argument('model', help='the float32 .onnx file '
                        '(tools/deployment/export_onnx.py)')
    parser.add_argument('--out', required=True, help='the int8 .onnx file')
    parser.add_argument('--split', default='train',
                        choices=['train', 'val', 'test'],
                        help='dataset split of the calibration images '
                        '(default: train)')
    parser.add_argument('--num-images', type=int, default=200,
                        help='calibration images (default: 200)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config entries, e.g. train_dataloader.dataset.'
        'data_root=data/my/')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    """Entry point; exits with status 2 and a message on bad input."""
    args = parse_args(argv)
    warnings.filterwarnings('ignore', category=UserWarning)
    from mmengine.config import Config

    from mmdet_sparse.deploy.quantize import QuantizeError, quantize_onnx
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    start = time.perf_counter()
    try:
        meta = quantize_onnx(cfg, args.model, args.out, args.split,
                             args.num_images)
    except (QuantizeError, FileNotFoundError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    quant = meta['quantization']
    print(f"Quantized {args.model} -> {args.out} (int8 QDQ, per-channel "
          f"weights, {quant['num_qdq']} quantized activations, "
          f"{quant['float_nodes']} activation products kept in float32; "
          f"calibrated on {quant['calibration']['num_images']} "
          f"{args.split} images in {time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == '__main__':
    sys.exit(main())
