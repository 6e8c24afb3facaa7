"""The package's CocoDataset: the same data as MMDetection's, with every
dropped annotation counted and a clear error for unusable files."""
import json
import math
import os.path as osp
import tempfile
from unittest import TestCase

from mmdet.datasets import CocoDataset as MMDetCocoDataset
from mmengine.logging import MMLogger
from mmengine.registry import DefaultScope

import mmdet_sparse
from mmdet_sparse.datasets import (AnnotationFileError, CocoDataset,
                                   DataCheckError)
from mmdet_sparse.registry import DATASETS

mmdet_sparse.register_all_modules(init_default_scope=False)

CLASSES = ('cat_a', 'cat_b', 'missing_class')
CATEGORIES = [dict(id=1, name='cat_a'), dict(id=2, name='cat_b'),
              dict(id=3, name='extra')]


def _image(img_id, name, w=100, h=80):
    return dict(id=img_id, file_name=name, width=w, height=h)


def _ann(ann_id, img_id, bbox, cat=1, area=None, **extra):
    area = bbox[2] * bbox[3] if area is None else area
    return dict(id=ann_id, image_id=img_id, bbox=bbox, category_id=cat,
                area=area, iscrowd=0, **extra)


def every_bad_case():
    """Images and annotations with each case MMDetection drops silently."""
    images = [_image(1, 'a.png'), _image(2, 'b.png'), _image(3, 'c.png'),
              _image(4, 'd.png'), _image(5, 'e.png', 20, 20)]
    anns = [
        _ann(1, 1, [10, 10, 20, 20]),                 # kept
        _ann(2, 1, [10, 10, 0, 20]),                  # zero width
        _ann(3, 1, [50, 10, -10, 20]),                # negative width
        _ann(4, 1, [200, 10, 20, 20]),                # outside the image
        _ann(5, 1, [math.nan, 10, 20, 20], area=400),  # NaN
        _ann(6, 1, [10, 10, 20, 20], cat=99),         # id not in categories
        _ann(7, 1, [10, 10, 20, 20], cat=3),          # not in the classes
        _ann(8, 1, [10, 10, 0.5, 20]),                # under one pixel
        _ann(9, 1, [10, 10, 20, 20], area=0),         # zero area
        _ann(10, 1, [10, 10, 20, 20], ignore=True),   # explicitly ignored
        dict(_ann(11, 1, [30, 30, 20, 20]), iscrowd=1),  # kept, crowd
        _ann(12, 2, [5, 5, 30, 30], cat=2),           # kept
        _ann(13, 3, [10, 10, 0, 0]),                  # zero area
        # image 4: no annotation; image 5: below min_size 32
        _ann(14, 5, [2, 2, 10, 10]),
    ]
    return dict(images=images, annotations=anns, categories=CATEGORIES)


class TestCocoDataset(TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def _write(self, name, coco, raw=None):
        path = osp.join(self.tmp.name, name)
        with open(path, 'w') as f:
            f.write(raw if raw is not None else json.dumps(coco))
        return path

    def _build(self, cls, ann_file, classes=CLASSES, **kwargs):
        kwargs.setdefault('filter_cfg',
                          dict(filter_empty_gt=True, min_size=32))
        with DefaultScope.overwrite_default_scope('mmdet'):
            return cls(ann_file=ann_file, data_prefix=dict(img='imgs/'),
                       metainfo=dict(classes=classes), pipeline=[],
                       **kwargs)

    def _build_logged(self, *args, **kwargs):
        logger = MMLogger.get_current_instance()
        with self.assertLogs(logger, 'INFO') as logs:
            dataset = self._build(CocoDataset, *args, **kwargs)
        return dataset, [(r.levelname, r.getMessage()) for r in logs.records]

    def test_registered_in_scope(self):
        self.assertIs(DATASETS.get('CocoDataset'), CocoDataset)
        self.assertIs(DATASETS.get('mmdet.CocoDataset'), MMDetCocoDataset)
        self.assertTrue(issubclass(CocoDataset, MMDetCocoDataset))

    def test_keeps_what_mmdetection_keeps(self):
        ann_file = self._write('bad.json', every_bad_case())
        for kwargs in (dict(), dict(test_mode=True), dict(filter_cfg=None)):
            ref = self._build(MMDetCocoDataset, ann_file, **kwargs)
            ours = self._build(CocoDataset, ann_file, **kwargs)
            self.assertEqual(len(ours), len(ref), msg=kwargs)
            for i in range(len(ref)):
                self.assertEqual(ours.get_data_info(i), ref.get_data_info(i),
                                 msg=kwargs)
            self.assertEqual(ours.cat_ids, ref.cat_ids)
        # The train split keeps images 1-3 (3 has no box left: MMDetection's
        # filter_empty_gt looks at categories, not at valid boxes).
        train = self._build(CocoDataset, ann_file)
        self.assertEqual([train.get_data_info(i)['img_id']
                          for i in range(len(train))], [1, 2, 3])
        self.assertEqual([len(train.get_data_info(i)['instances'])
                          for i in range(len(train))], [2, 1, 0])

    def test_counts_every_reason_and_warns_once(self):
        ann_file = self._write('bad.json', every_bad_case())
        dataset, logs = self._build_logged(ann_file)
        report = dataset.report
        self.assertEqual(dict(report.dropped), {
            'ignored': 1, 'non_finite': 1, 'negative_size': 1,
            'zero_area': 3, 'outside_image': 1, 'under_1px': 1,
            'unknown_category_id': 1, 'category_not_in_classes': 1})
        self.assertEqual(dict(report.filtered),
                         {'filter_empty_gt': 1, 'min_size': 1})
        self.assertEqual((report.num_images, report.num_annotations,
                          report.num_kept), (5, 14, 4))
        self.assertEqual(report.examples['zero_area'],
                         [(1, 'a.png', 2), (1, 'a.png', 9), (3, 'c.png', 13)])
        self.assertEqual(report.classes.missing, ['missing_class'])
        self.assertEqual(report.classes.extra, ['extra'])
        # One warning for the dataset, before any item is read.
        warnings = [m for level, m in logs if level == 'WARNING']
        self.assertEqual(len(warnings), 1)
        msg = warnings[0]
        self.assertIn(ann_file, msg)
        self.assertIn('kept 4 of 14 annotations of 5 images; 3 used after '
                      'filter_cfg',
                      msg)
        for text in ('3 zero width, height or area',
                     "image 1 'a.png' ann 2",
                     '1 NaN or infinite coordinate',
                     '1 negative width or height', '1 box outside the image',
                     '1 width or height below 1 px',
                     '1 category_id not in the file\'s "categories"',
                     '1 category not in metainfo.classes',
                     '1 no box of the classes (filter_empty_gt=True)',
                     "image 4 'd.png'",
                     '1 shorter side below filter_cfg.min_size',
                     "has no category in the file: 'missing_class'",
                     "1 category of the file not in metainfo.classes (their "
                     "boxes are dropped): 'extra'"):
            self.assertIn(text, msg)

    def test_clean_file_logs_info_only(self):
        coco = dict(images=[_image(1, 'a.png')],
                    annotations=[_ann(1, 1, [1, 1, 10, 10], cat=2)],
                    categories=CATEGORIES[:2])
        dataset, logs = self._build_logged(self._write('clean.json', coco),
                                           classes=('cat_a', 'cat_b'))
        self.assertEqual([level for level, _ in logs], ['INFO'])
        self.assertIn('kept 1 of 1 annotation of 1 image', logs[0][1])
        self.assertEqual(dataset.get_data_info(0)['instances'][0]
                         ['bbox_label'], 1)

    def test_class_order_and_case(self):
        coco = dict(images=[_image(1, 'a.png')],
                    annotations=[_ann(1, 1, [1, 1, 10, 10], cat=2)],
                    categories=CATEGORIES[:2])
        _, logs = self._build_logged(self._write('order.json', coco),
                                     classes=('cat_b', 'cat_a'))
        self.assertEqual(logs[0][0], 'WARNING')
        self.assertIn('in the order of the file', logs[0][1])
        coco['annotations'].append(_ann(2, 1, [1, 1, 10, 10], cat=1))
        _, logs = self._build_logged(self._write('case.json', coco),
                                     classes=('cat_a', 'Cat_B'))
        self.assertIn("'Cat_B' ~ 'cat_b'", logs[0][1])

    def test_no_box_left_is_an_error(self):
        coco = every_bad_case()
        ann_file = self._write('no_box.json', coco)
        with self.assertRaises(DataCheckError) as ctx:
            self._build(CocoDataset, ann_file, classes=('dog', 'cat'),
                        filter_cfg=dict(filter_empty_gt=False))
        msg = str(ctx.exception)
        for text in (ann_file, 'no box left to train on', 'kept 0 of 14',
                     "have no category in the file: 'dog', 'cat'",
                     'metainfo.classes (in train_dataloader.dataset)'):
            self.assertIn(text, msg)
        # Test data may hold no box (e.g. image lists for test-dev).
        dataset = self._build(CocoDataset, ann_file, classes=('dog', 'cat'),
                              test_mode=True)
        self.assertEqual(len(dataset), 5)

    def test_every_image_filtered_is_an_error(self):
        coco = dict(images=[_image(1, 'a.png'), _image(2, 'b.png')],
                    annotations=[], categories=CATEGORIES)
        ann_file = self._write('empty.json', coco)
        with self.assertRaisesRegex(ValueError, 'need at least one array'):
            self._build(MMDetCocoDataset, ann_file)  # what it was
        with self.assertRaises(DataCheckError) as ctx:
            self._build(CocoDataset, ann_file)
        msg = str(ctx.exception)
        for text in (ann_file, 'left out all 2 image(s)',
                     '2 no box of the classes (filter_empty_gt=True)',
                     'filter_cfg.filter_empty_gt=False'):
            self.assertIn(text, msg)
        # A file without images is named too.
        with self.assertRaisesRegex(DataCheckError, 'holds no image'):
            self._build(CocoDataset, self._write(
                'no_images.json', dict(images=[], annotations=[],
                                       categories=CATEGORIES)))

    def test_truncated_json_names_the_file(self):
        text = json.dumps(every_bad_case())
        ann_file = self._write('cut.json', None, raw=text[:len(text) // 2])
        with self.assertRaises(AnnotationFileError) as ctx:
            self._build(CocoDataset, ann_file)
        self.assertIn(ann_file, str(ctx.exception))
        self.assertIn('valid COCO JSON', str(ctx.exception))
        self.assertIsInstance(ctx.exception.__cause__, json.JSONDecodeError)

    def test_malformed_annotation_names_file_and_image(self):
        coco = every_bad_case()
        del coco['annotations'][11]['bbox']
        ann_file = self._write('no_bbox.json', coco)
        with self.assertRaises(AnnotationFileError) as ctx:
            self._build(CocoDataset, ann_file)
        msg = str(ctx.exception)
        self.assertIn(ann_file, msg)
        self.assertIn("image 2 ('b.png')", msg)
        self.assertIn("KeyError: 'bbox'", msg)
        self.assertIsInstance(ctx.exception.__cause__, KeyError)

    def test_infinite_side_kept_by_mmdetection_is_an_error(self):
        coco = every_bad_case()
        coco['annotations'].append(_ann(15, 2, [1, 1, math.inf, 5], area=5))
        ann_file = self._write('inf.json', coco)
        ref = self._build(MMDetCocoDataset, ann_file)
        self.assertEqual(len(ref.get_data_info(1)['instances']), 2)
        with self.assertRaises(DataCheckError) as ctx:
            self._build(CocoDataset, ann_file)
        self.assertIn("(2, 'b.png', 15)", str(ctx.exception))
        test = self._build(CocoDataset, ann_file, test_mode=True)
        self.assertEqual(test.get_data_info(1), ref.get_data_info(1))
