"""Generate the bundled synthetic-shapes demo dataset (COCO format).

Examples::

    python tools/make_demo_data.py --out-dir data/shapes
    # crowds of one class in CrowdHuman format (.odgt), for the CrowdHuman
    # config and metric
    python tools/make_demo_data.py --format odgt --out-dir data/crowd_shapes
"""
import argparse
import inspect
import time

from mmdet_sparse.datasets import (SHAPES_CLASSES, ensure_shapes_dataset,
                                   generate_crowd_shapes_odgt,
                                   generate_shapes_dataset)


def parse_args() -> argparse.Namespace:
    """Parse the command line (unset options keep the library defaults)."""
    defaults = {k: p.default for k, p in inspect.signature(
        generate_shapes_dataset).parameters.items()}
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--format', choices=('coco', 'odgt'), default='coco',
                        help='coco: the demo dataset; odgt: crowded shapes '
                        'of one class in CrowdHuman format (default: coco)')
    parser.add_argument('--out-dir', default=None,
                        help='dataset folder (default: data/shapes, with '
                        '--format odgt data/crowd_shapes)')
    for name, what in (('num_train', 'training images'),
                       ('num_val', 'validation images'),
                       ('seed', 'random seed')):
        parser.add_argument(f'--{name.replace("_", "-")}', type=int,
                            help=f'{what} (default: {defaults[name]}; '
                        'odgt: 60 train, 20 val)')
    parser.add_argument('--force', action='store_true',
                        help='regenerate even if the folder is up to date')
    return parser.parse_args()


def make_odgt(args: argparse.Namespace, given: dict) -> None:
    """Write the crowded-shapes CrowdHuman-format set and print its counts."""
    start = time.perf_counter()
    out_dir = args.out_dir or 'data/crowd_shapes'
    info = generate_crowd_shapes_odgt(out_dir, **given)
    print(f'{info["out_dir"]}: generated ({time.perf_counter() - start:.1f}'
          ' s), class: person')
    for split in ('train', 'val'):
        s = info[split]
        print(f'  {split}: {s["num_images"]} images, {s["num_persons"]} '
              f'persons + {s["num_ignored"]} ignored boxes, annotations '
              f'{s["ann_file"]}, images in {info["img_dir"]}')


def main() -> None:
    """Create (or reuse) the dataset and print where it lies."""
    args = parse_args()
    start = time.perf_counter()
    given = {k: getattr(args, k) for k in ('num_train', 'num_val', 'seed')
             if getattr(args, k) is not None}
    if args.format == 'odgt':
        make_odgt(args, given)
        return
    args.out_dir = args.out_dir or 'data/shapes'
    info = ensure_shapes_dataset(args.out_dir, force=args.force, **given)
    action = 'generated' if info['regenerated'] else 'up to date, kept'
    print(f'{info["out_dir"]}: {action} '
          f'({time.perf_counter() - start:.1f} s)')
    print(f'  classes: {", ".join(SHAPES_CLASSES)}')
    for split in ('train', 'val'):
        s = info[split]
        print(f'  {split}: {s["num_images"]} images, '
              f'{s["num_annotations"]} boxes in {s["img_dir"]}, '
              f'annotations {s["ann_file"]}')


if __name__ == '__main__':
    main()
