"""Convert the Sparse R-CNN authors' detectron2 checkpoints.

Example::

    python tools/model_converters/sparse_rcnn_d2_to_mmdet.py \\
        r50_100pro_3x_model.pth sparse_rcnn_r50_100pro_3x_d2.pth \\
        --config configs/authors/sparse_rcnn_r50_fpn_100pro_3x_d2.py

Reads the authors' ``{'model': ...}`` ``.pth`` or ``.pkl`` (without running
code from it), writes ``{'state_dict': ..., 'meta': ...}`` for this
package's model and, with ``--config``, checks that it loads with
``strict=True``. Unknown or missing keys are an error that lists them.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))

from mmdet_sparse.utils.d2_checkpoint import (  # noqa: E402
    check_strict_load, convert_d2_checkpoint)


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(
        description="Convert the Sparse R-CNN authors' detectron2 checkpoint "
        "(.pth or .pkl) to this package's format")
    parser.add_argument('src', help="the authors' checkpoint (.pth / .pkl)")
    parser.add_argument('dst', help='output checkpoint (.pth)')
    parser.add_argument(
        '--config', default=None,
        help='also load the result into this config with strict=True, e.g. '
        'configs/authors/sparse_rcnn_r50_fpn_100pro_3x_d2.py')
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    """Convert, print what was done, optionally check a strict load."""
    args = parse_args(argv)
    report = convert_d2_checkpoint(args.src, args.dst)
    arch = report['architecture']
    print(f"read {report['src']} ({report['format']}): ResNet-"
          f"{arch['depth']}, {arch['num_stages']} stages, "
          f"{arch['num_cls_fcs']} cls / {arch['num_reg_fcs']} reg fcs")
    print(f"converted {report['num_converted']} tensors; added "
          f"{len(report['added'])} BatchNorm num_batches_tracked counters "
          '(FrozenBatchNorm has none)')
    if report['frozen_bn_upgraded']:
        print(f"subtracted eps from running_var of "
              f"{len(report['frozen_bn_upgraded'])} FrozenBatchNorm layers "
              'saved before version 3')
    if report['not_converted']:
        print('not converted (training state): ' +
              ', '.join(report['not_converted']))
    print(f"wrote {report['dst']}")
    if args.config:
        num = check_strict_load(args.dst, args.config)
        print(f'loaded {num} tensors into {args.config} with strict=True')
    return report


if __name__ == '__main__':
    main()
