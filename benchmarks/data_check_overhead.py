"""Loading time of the package's CocoDataset (with its drop report) against
MMDetection's, on a generated COCO-sized annotation file.

Example::

    python benchmarks/data_check_overhead.py --images 20000 --repeats 5

Both classes load the same file in the same process, alternating, and the
ratio of the medians of their CPU times is printed (timings on a shared
machine are noisy; the ratio of alternated runs is what to compare).
``--bad`` is the share of annotations that are broken (they take the
slower, per-annotation path).
"""
import argparse
import json
import os.path as osp
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmdet.datasets import CocoDataset as MMDetCocoDataset  # noqa: E402
from mmengine.logging import MMLogger  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402

import mmdet_sparse  # noqa: E402
from mmdet_sparse.datasets import CocoDataset  # noqa: E402


def make_file(path: str, num_images: int, per_image: int, bad: float,
              num_classes: int = 80, seed: int = 0) -> int:
    """Write a COCO file of random boxes, ``bad`` of them zero-width."""
    rng = np.random.default_rng(seed)
    images, anns = [], []
    for i in range(num_images):
        images.append(dict(id=i + 1, file_name=f'{i + 1:012d}.jpg',
                           width=640, height=480))
        xy = rng.uniform(0, 400, (per_image, 2)).round(2)
        wh = rng.uniform(1, 200, (per_image, 2)).round(2)
        wh[rng.random(per_image) < bad, 0] = 0
        for k in range(per_image):
            anns.append(dict(
                id=len(anns) + 1, image_id=i + 1,
                category_id=int(rng.integers(1, num_classes + 1)),
                bbox=[*xy[k].tolist(), *wh[k].tolist()],
                area=float(wh[k].prod()), iscrowd=0))
    cats = [dict(id=c + 1, name=f'class_{c}') for c in range(num_classes)]
    with open(path, 'w') as f:
        json.dump(dict(images=images, annotations=anns, categories=cats), f)
    return len(anns)


def load_seconds(cls, ann_file: str, classes) -> float:
    """CPU seconds of this process to build the dataset (less disturbed
    by other processes on a shared machine than the wall clock)."""
    start = time.process_time()
    with DefaultScope.overwrite_default_scope('mmdet'):
        cls(ann_file=ann_file, metainfo=dict(classes=classes),
            data_prefix=dict(img=''), pipeline=[],
            filter_cfg=dict(filter_empty_gt=True, min_size=32))
    return time.process_time() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--images', type=int, default=20000)
    parser.add_argument('--per-image', type=int, default=7)
    parser.add_argument('--bad', type=float, default=0.01)
    parser.add_argument('--repeats', type=int, default=5)
    args = parser.parse_args(argv)
    mmdet_sparse.register_all_modules(init_default_scope=False)
    MMLogger.get_current_instance().setLevel('ERROR')
    classes = tuple(f'class_{c}' for c in range(80))
    with tempfile.TemporaryDirectory() as tmp:
        ann_file = osp.join(tmp, 'instances.json')
        num = make_file(ann_file, args.images, args.per_image, args.bad)
        times = {MMDetCocoDataset: [], CocoDataset: []}
        for _ in range(args.repeats):
            for cls in (MMDetCocoDataset, CocoDataset):
                times[cls].append(load_seconds(cls, ann_file, classes))
    ref = statistics.median(times[MMDetCocoDataset])
    ours = statistics.median(times[CocoDataset])
    pairs = statistics.median(
        o / r for o, r in zip(times[CocoDataset], times[MMDetCocoDataset]))
    print(f'{args.images} images, {num} annotations, {args.bad:.0%} bad; '
          f'median CPU time of {args.repeats} alternated loads:')
    print(f'  mmdet CocoDataset        {ref:.3f} s')
    print(f'  mmdet_sparse CocoDataset {ours:.3f} s')
    print(f'  ratio of medians {ours / ref:.3f}, median of paired ratios '
          f'{pairs:.3f}')


if __name__ == '__main__':
    main()
