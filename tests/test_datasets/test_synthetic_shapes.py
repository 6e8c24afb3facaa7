"""Tests of the synthetic-shapes demo dataset."""
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import unittest
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from mmdet_sparse.datasets.synthetic_shapes import (SHAPES_CLASSES,
                                                    ensure_shapes_dataset,
                                                    generate_shapes_dataset)

# Small, non-square images; high probabilities so that both an empty and a
# crowded image turn up among 16.
PARAMS = dict(num_train=12, num_val=4, img_size=(128, 160), seed=0,
              empty_prob=0.25, crowded_prob=0.25)


# SHA-256 of the images, boxes, categories and pixels that PARAMS gave
# before the masks were added (data version 2): the masks change nothing else.
BOXES_AND_PIXELS_V2 = \
    'e3667cd96bd05a8e0854bcf8add229f6204d5317a50873b05d3fad9ced422608'


def _load(out: Path, split: str) -> dict:
    return json.loads((out / 'annotations' / f'instances_{split}.json')
                      .read_text())


def _boxes_and_pixels_digest(out: Path) -> str:
    digest = hashlib.sha256()
    for split in ('train', 'val'):
        coco = _load(out, split)
        boxes = [[a['id'], a['image_id'], a['category_id'], a['bbox'],
                  a['area'], a['iscrowd']] for a in coco['annotations']]
        digest.update(json.dumps([coco['images'], boxes,
                                  coco['categories']]).encode())
        for png in sorted((out / split).glob('*.png')):
            digest.update(cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
                          .tobytes())
    return digest.hexdigest()


class TestSyntheticShapes(unittest.TestCase):

    @classmethod
    def setUpClass(cls) -> None:
        cls.tmp = Path(tempfile.mkdtemp())
        cls.out = cls.tmp / 'base'
        cls.info = generate_shapes_dataset(cls.out, **PARAMS)

    @classmethod
    def tearDownClass(cls) -> None:
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def _same(self, other: Path) -> bool:
        for split in ('train', 'val'):
            name = f'annotations/instances_{split}.json'
            if (self.out / name).read_bytes() != (other / name).read_bytes():
                return False
            for png in sorted((self.out / split).glob('*.png')):
                a = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
                b = cv2.imread(str(other / split / png.name),
                               cv2.IMREAD_UNCHANGED)
                if b is None or not np.array_equal(a, b):
                    return False
        return True

    def test_deterministic(self) -> None:
        again = generate_shapes_dataset(self.tmp / 'again', **PARAMS)
        self.assertTrue(self._same(Path(again['out_dir'])))
        other = generate_shapes_dataset(self.tmp / 'seed1',
                                        **dict(PARAMS, seed=1))
        self.assertFalse(self._same(Path(other['out_dir'])))

    def test_annotations_valid(self) -> None:
        height, width = PARAMS['img_size']
        for split in ('train', 'val'):
            coco = _load(self.out, split)
            self.assertEqual([c['name'] for c in coco['categories']],
                             list(SHAPES_CLASSES))
            self.assertEqual([c['id'] for c in coco['categories']],
                             list(range(1, len(SHAPES_CLASSES) + 1)))
            self.assertEqual(len(coco['images']), PARAMS[f'num_{split}'])
            self.assertEqual(self.info[split]['num_annotations'],
                             len(coco['annotations']))
            sizes = {}
            for img in coco['images']:
                self.assertEqual((img['height'], img['width']),
                                 (height, width))
                pixels = cv2.imread(
                    str(self.out / split / img['file_name']))
                self.assertEqual(pixels.shape, (height, width, 3))
                sizes[img['id']] = (img['width'], img['height'])
            ann_ids = [a['id'] for a in coco['annotations']]
            self.assertEqual(len(ann_ids), len(set(ann_ids)))
            for ann in coco['annotations']:
                x, y, w, h = ann['bbox']
                img_w, img_h = sizes[ann['image_id']]
                self.assertGreater(w, 1)
                self.assertGreater(h, 1)
                self.assertTrue(0 <= x and x + w <= img_w, ann)
                self.assertTrue(0 <= y and y + h <= img_h, ann)
                self.assertTrue(0 < ann['area'] <= w * h, ann)
                self.assertIn(ann['category_id'], range(1, 6))
                self.assertEqual(ann['iscrowd'], 0)

    def test_boxes_and_pixels_unchanged_by_masks(self) -> None:
        self.assertEqual(_boxes_and_pixels_digest(self.out),
                         BOXES_AND_PIXELS_V2)

    def test_segmentation_is_the_visible_mask(self) -> None:
        from pycocotools import mask as mask_utils
        height, width = PARAMS['img_size']
        for split in ('train', 'val'):
            coco = _load(self.out, split)
            owner = {}
            for ann in coco['annotations']:
                seg = ann['segmentation']
                self.assertEqual(seg['size'], [height, width])
                self.assertIsInstance(seg['counts'], str)
                mask = mask_utils.decode(
                    dict(size=seg['size'], counts=seg['counts'].encode()))
                # Exact: the visible pixel count and their tight box.
                self.assertEqual(int(mask.sum()), ann['area'])
                rows = np.flatnonzero(mask.any(1))
                cols = np.flatnonzero(mask.any(0))
                self.assertEqual(
                    [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1),
                     int(rows[-1] - rows[0] + 1)], ann['bbox'])
                # Objects of an image do not overlap (occlusion cuts).
                taken = owner.setdefault(ann['image_id'],
                                         np.zeros_like(mask))
                self.assertFalse((taken & mask).any())
                taken |= mask

    def test_empty_and_crowded_images(self) -> None:
        counts = []
        for split in ('train', 'val'):
            coco = _load(self.out, split)
            per_image = Counter(a['image_id'] for a in coco['annotations'])
            counts += [per_image[img['id']] for img in coco['images']]
        self.assertIn(0, counts)
        self.assertGreaterEqual(max(counts), 20)

    def test_ensure_caches(self) -> None:
        out = self.tmp / 'cache' / 'shapes'
        first = ensure_shapes_dataset(out, **PARAMS)
        self.assertTrue(first['regenerated'])
        files = [out / 'meta.json', Path(first['train']['ann_file'])]
        stamps = [os.stat(f).st_mtime_ns for f in files]
        second = ensure_shapes_dataset(out, **PARAMS)
        self.assertFalse(second['regenerated'])
        self.assertEqual([os.stat(f).st_mtime_ns for f in files], stamps)
        self.assertEqual(second['train'], first['train'])
        third = ensure_shapes_dataset(out, **dict(PARAMS, num_val=3))
        self.assertTrue(third['regenerated'])
        self.assertEqual(len(_load(out, 'val')['images']), 3)
        self.assertEqual(len(list((out / 'val').glob('*.png'))), 3)
        # Only the dataset remains beside: no temporary folders.
        self.assertEqual(os.listdir(out.parent), ['shapes'])

    @unittest.skipUnless(importlib.util.find_spec('mmdet'), 'needs mmdet')
    def test_loads_as_coco_dataset(self) -> None:
        from mmdet.datasets import CocoDataset
        from mmdet.utils import register_all_modules
        from mmengine.registry import DefaultScope
        register_all_modules(init_default_scope=False)
        for split in ('train', 'val'):
            coco = _load(self.out, split)
            with DefaultScope.overwrite_default_scope('mmdet'):
                dataset = CocoDataset(
                    data_root=str(self.out),
                    ann_file=f'annotations/instances_{split}.json',
                    data_prefix=dict(img=f'{split}/'),
                    metainfo=dict(classes=SHAPES_CLASSES),
                    filter_cfg=None,
                    pipeline=[
                        dict(type='LoadImageFromFile'),
                        dict(type='LoadAnnotations', with_bbox=True,
                             with_mask=True)
                    ])
                self.assertEqual(len(dataset), len(coco['images']))
                items = [dataset[i] for i in range(len(dataset))]
                boxes = [item['gt_bboxes'] for item in items]
                for item in items:
                    masks = item['gt_masks']
                    self.assertEqual(len(masks), len(item['gt_bboxes']))
                    self.assertEqual((masks.height, masks.width),
                                     tuple(PARAMS['img_size']))
            self.assertEqual(sum(len(b) for b in boxes),
                             len(coco['annotations']))
            first = coco['annotations'][0]
            x, y, w, h = first['bbox']
            index = [img['id'] for img in coco['images']].index(
                first['image_id'])
            np.testing.assert_allclose(
                np.asarray(boxes[index].tensor[0]), [x, y, x + w, y + h])
            self.assertEqual(
                dataset[index]['gt_bboxes_labels'][0],
                first['category_id'] - 1)
            self.assertEqual(int(items[index]['gt_masks'].masks[0].sum()),
                             first['area'])


if __name__ == '__main__':
    unittest.main()
