"""DataCheckHook: a run whose data classes do not fit the model's
``num_classes`` stops before its first iteration, saying what to set."""
import copy
import glob
import json
import os.path as osp
import tempfile
from types import SimpleNamespace
from unittest import TestCase

import torch.nn as nn
from support import tool_runs
from support.helpers import CONFIG_DIR
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.logging import MMLogger
from mmengine.runner import Runner

from mmdet_sparse.datasets import SHAPES_CLASSES, DataCheckError
from mmdet_sparse.engine import DataCheckHook, check_classes

DEMO = osp.join(CONFIG_DIR, 'sparse_rcnn_r18_fpn_shapes_demo.py')


class _CountIters(Hook):
    """Counts the iterations that started."""

    def __init__(self):
        self.iters = 0

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.iters += 1

    def before_test_iter(self, runner, batch_idx, data_batch=None):
        self.iters += 1


def _model(*num_classes):
    """A stand-in detector whose box heads have these ``num_classes``."""
    model = nn.Module()
    model.roi_head = nn.Module()
    model.roi_head.bbox_head = nn.ModuleList()
    for n in num_classes:
        head = nn.Module()
        head.num_classes = n
        model.roi_head.bbox_head.append(head)
    return model


def _dataset(ann_file, classes, cat_ids):
    return SimpleNamespace(metainfo=dict(classes=classes), cat_ids=cat_ids,
                           ann_file=ann_file)


class TestDataCheckHook(TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.ann_file = osp.join(cls.tmp.name, 'instances.json')
        coco = dict(
            images=[dict(id=1, file_name='a.png', width=64, height=64)],
            annotations=[dict(id=i + 1, image_id=1, category_id=i + 1,
                              bbox=[2 + 10 * i, 2, 8, 8], area=64,
                              iscrowd=0) for i in range(5)],
            categories=[dict(id=i + 1, name=n)
                        for i, n in enumerate(SHAPES_CLASSES)])
        with open(cls.ann_file, 'w') as f:
            json.dump(coco, f)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def _runner(self, num_classes, test_classes):
        """The demo config on the one-image file; the test split names
        ``test_classes`` only."""
        cfg = Config.fromfile(DEMO)
        cfg.work_dir = osp.join(self.tmp.name, 'work')
        cfg.model.roi_head.bbox_head.num_classes = num_classes
        for split in ('train', 'val', 'test'):
            loader = cfg[f'{split}_dataloader'] = copy.deepcopy(
                cfg[f'{split}_dataloader'])
            loader.update(num_workers=0, persistent_workers=False)
            loader.dataset.update(data_root=self.tmp.name,
                                  ann_file='instances.json',
                                  data_prefix=dict(img=''),
                                  serialize_data=False)
        cfg.test_dataloader.dataset.metainfo = dict(classes=test_classes)
        for split in ('val', 'test'):
            cfg[f'{split}_evaluator'].ann_file = self.ann_file
        cfg.visualizer.vis_backends = []
        runner = Runner.from_cfg(cfg)
        counter = _CountIters()
        runner.register_hook(counter)
        return runner, counter

    def test_every_config_gets_the_hook(self):
        configs = sorted(glob.glob(osp.join(CONFIG_DIR, '*.py')))
        self.assertGreater(len(configs), 5)
        with tempfile.TemporaryDirectory() as tmp:
            e2e_cfg = Config.fromfile(tool_runs.write_config(
                osp.join(tmp, 'tiny.py'), data='data', batch=2, epochs=1))
        for name, cfg in [(c, Config.fromfile(c)) for c in configs] + [
                ('test_end_to_end CONFIG', e2e_cfg)]:
            self.assertEqual(cfg.default_hooks.data_check.type,
                             'DataCheckHook', msg=name)
            # COCO-format data goes through this package's CocoDataset
            # (drop counts); CrowdHuman's .odgt data through MMDetection's.
            self.assertIn(cfg.train_dataloader.dataset.type,
                          ('CocoDataset', 'CrowdHumanDataset'), msg=name)
            self.assertEqual(
                cfg.train_dataloader.dataset.type == 'CrowdHumanDataset',
                'crowd' in osp.basename(name), msg=name)

    def test_class_count_mismatch_stops_before_the_first_iteration(self):
        # Train: 5 classes in the data, 3 in the model (an IndexError in the
        # matching cost at the first iteration without the check).
        runner, counter = self._runner(3, test_classes=SHAPES_CLASSES[:2])
        with self.assertRaises(DataCheckError) as ctx:
            runner.train()
        self.assertEqual((counter.iters, runner.iter), (0, 0))
        msg = str(ctx.exception)
        for text in ('train data has 5 classes', self.ann_file,
                     'model predicts 3',
                     'labels 3..4 of the data have no output',
                     'matching cost',
                     'model.roi_head.bbox_head.num_classes=5',
                     '--cfg-options model.roi_head.bbox_head.num_classes=5',
                     'train_dataloader.dataset.metainfo.classes'):
            self.assertIn(text, msg)
        # Test: 2 classes in the data, 3 in the model (an IndexError in
        # CocoMetric.results2json after the whole split without the check).
        with self.assertRaises(DataCheckError) as ctx:
            runner.test()
        self.assertEqual(counter.iters, 0)
        msg = str(ctx.exception)
        for text in ('test data has 2 classes', 'model predicts 3',
                     'predictions of label 2 name no class',
                     'CocoMetric.results2json',
                     'model.roi_head.bbox_head.num_classes=2',
                     'test_dataloader.dataset.metainfo.classes'):
            self.assertIn(text, msg)

    def test_per_stage_heads_and_partial_class_match(self):
        cfg = Config(dict(model=dict(roi_head=dict(
            bbox_head=[dict(num_classes=80)] * 3))))
        data = _dataset('x.json', ('a', 'b', 'c'), [1, 2])
        with self.assertRaises(DataCheckError) as ctx:
            check_classes(data, _model(3, 3, 3), 'val', cfg)
        msg = str(ctx.exception)
        for text in ('val data has 2 classes',
                     'metainfo.classes has 3 names, 2 of them in the file',
                     'each of the 3 per-stage dicts',
                     'model.roi_head.bbox_head.0.num_classes=2 '
                     'model.roi_head.bbox_head.1.num_classes=2 '
                     'model.roi_head.bbox_head.2.num_classes=2'):
            self.assertIn(text, msg)
        check_classes(data, _model(2, 2, 2), 'val', cfg)  # fits: no error
        check_classes(data, nn.Linear(1, 1), 'val', cfg)  # no box head

    def test_checks_each_dataset_once(self):
        hook = DataCheckHook()
        data = _dataset('x.json', ('a', 'b'), [1, 2])
        loader = SimpleNamespace(dataset=data)
        runner = SimpleNamespace(model=_model(2), cfg=None,
                                 train_dataloader=loader,
                                 val_loop=SimpleNamespace(dataloader=loader),
                                 test_loop=SimpleNamespace(dataloader=loader))
        hook.before_train(runner)
        runner.model = _model(3)  # a checked dataset is not checked again
        hook.before_val(runner)
        other = SimpleNamespace(dataset=_dataset('y.json', ('a', 'b'),
                                                 [1, 2]))
        runner.test_loop = SimpleNamespace(dataloader=other)
        with self.assertRaisesRegex(DataCheckError, 'y.json'):
            hook.before_test(runner)
        # strict=False: the same words as a warning, and the run goes on.
        loose = DataCheckHook(strict=False)
        with self.assertLogs(MMLogger.get_current_instance(),
                             'WARNING') as logs:
            loose.before_test(runner)
        self.assertIn('y.json', logs.output[0])
        self.assertIn('strict=False', logs.output[0])
