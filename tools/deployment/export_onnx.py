"""Export a trained Sparse R-CNN to one NMS-free ONNX graph.

Example::

    python tools/deployment/export_onnx.py configs/CONFIG.py CKPT.pth \\
        --out model.onnx --dynamic

The graph holds the backbone, the neck, the learned proposals, every stage
and the top ``max_per_img`` (batch 1, standard ONNX operators only). Its
inputs are the preprocessed, padded image and the unpadded image size; the
preprocessing facts and class names are written into the model's metadata,
so ``tools/infer.py --backend onnxruntime`` and
``tools/deployment/test_onnx.py`` need no config to run it.
"""
import argparse
import os.path as osp
import sys
import warnings

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line arguments."""
    from mmdet_sparse.deploy import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET
    parser = argparse.ArgumentParser(
        description='Export Sparse R-CNN to ONNX (whole detector, no NMS)')
    parser.add_argument('config', help='model config file')
    parser.add_argument('checkpoint', help='checkpoint file or http(s) URL')
    parser.add_argument('--out', required=True, help='the .onnx file')
    parser.add_argument(
        '--opset', type=int, default=DEFAULT_OPSET,
        help=f'ONNX opset, {MIN_OPSET}..{MAX_OPSET} (default '
        f'{DEFAULT_OPSET})')
    parser.add_argument(
        '--img-size', type=int, nargs=2, metavar=('H', 'W'), default=None,
        help='example (and, without --dynamic, the fixed) input size, '
        'multiples of pad_size_divisor (default: the largest landscape '
        'input of the test resize)')
    parser.add_argument(
        '--dynamic', action='store_true',
        help='height and width free, in multiples of pad_size_divisor')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    """Entry point; exits with an error message naming what cannot be
    exported."""
    args = parse_args(argv)
    from mmdet_sparse.deploy import ExportError, export_onnx
    from mmdet_sparse.utils.checkpoint_url import resolve_checkpoint
    warnings.filterwarnings('ignore', category=UserWarning)
    warnings.filterwarnings('ignore', category=DeprecationWarning)
    try:
        meta = export_onnx(args.config, resolve_checkpoint(args.checkpoint),
                           args.out, opset=args.opset,
                           img_size=args.img_size, dynamic=args.dynamic)
    except ExportError as exc:
        print(f'error: {args.config}: {exc}', file=sys.stderr)
        return 2
    size = 'dynamic H, W (example {}x{})' if meta['dynamic'] else \
        'fixed {}x{}'
    print(f"Exported {args.config} -> {args.out} (opset {meta['opset']}, "
          f"{size.format(*meta['img_size'])}, "
          f"{meta['num_proposals']} proposals, top {meta['max_per_img']}, "
          f"{len(meta['classes'])} classes)")
    return 0


if __name__ == '__main__':
    sys.exit(main())
