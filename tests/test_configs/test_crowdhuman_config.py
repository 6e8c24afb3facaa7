"""The CrowdHuman config: the paper's settings, and its data and metric
wiring run end to end on a generated crowded-shapes ``.odgt`` set (a
scaled-down model trains a few iterations, then CrowdHumanMetric scores it);
the metric gives the expected values for perfect detections."""
import math
import os.path as osp
import tempfile
import uuid
from unittest import TestCase

import numpy as np
import torch
from support.helpers import CONFIG_DIR
from mmengine.config import Config
from mmengine.runner import Runner

from mmdet.registry import DATASETS, METRICS
from mmdet_sparse.datasets import generate_crowd_shapes_odgt

CONFIG = osp.join(CONFIG_DIR, 'sparse_rcnn_r50_fpn_500pro_50e_crowdhuman.py')
DEMO = osp.join(CONFIG_DIR, 'sparse_rcnn_r18_fpn_shapes_demo.py')


class TestCrowdHumanConfig(TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.data = osp.join(cls.tmp.name, 'crowd') + '/'
        cls.info = generate_crowd_shapes_odgt(
            cls.data, num_train=4, num_val=3, img_size=(96, 128))

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def _config(self) -> Config:
        """The CrowdHuman config on the generated set, small images."""
        cfg = Config.fromfile(CONFIG)
        for loader in (cfg.train_dataloader, cfg.val_dataloader,
                       cfg.test_dataloader):
            loader.dataset.data_root = self.data
            loader.num_workers = 0
            loader.persistent_workers = False
        cfg.train_dataloader.dataset.pipeline[2].scales = [(160, 96),
                                                           (160, 128)]
        cfg.val_dataloader.dataset.pipeline[1].scale = (160, 128)
        cfg.val_evaluator.ann_file = self.data + 'annotation_val.odgt'
        cfg.val_evaluator.num_ji_process = 1
        return cfg

    def test_paper_settings(self):
        cfg = Config.fromfile(CONFIG)
        self.assertEqual(cfg.model.rpn_head.num_proposals, 500)
        self.assertEqual(cfg.model.test_cfg.rcnn.max_per_img, 500)
        self.assertEqual(cfg.model.roi_head.bbox_head.num_classes, 1)
        self.assertEqual(cfg.train_dataloader.dataset.type,
                         'CrowdHumanDataset')
        self.assertEqual(cfg.test_evaluator.type, 'CrowdHumanMetric')
        scales = cfg.train_dataloader.dataset.pipeline[2].scales
        self.assertEqual(sorted({min(s) for s in scales})[::10], [480, 800])
        self.assertEqual({max(s) for s in scales}, {1500})
        self.assertEqual(cfg.train_cfg.max_epochs, 50)
        self.assertEqual(cfg.param_scheduler[-1].milestones, [40])
        self.assertEqual(cfg.param_scheduler[-1].gamma, 0.1)

    def test_metric_on_perfect_detections(self):
        cfg = self._config()
        dataset = DATASETS.build(dict(cfg.val_dataloader.dataset,
                                      pipeline=[]))
        metric = METRICS.build(cfg.val_evaluator)
        results = []
        for i in range(len(dataset)):
            info = dataset.get_data_info(i)
            boxes = np.array([inst['bbox'] for inst in info['instances']
                              if not inst['ignore_flag']], np.float32)
            results.append(dict(
                img_id=info['img_id'],
                ori_shape=(info['height'], info['width']),
                pred_instances=dict(
                    bboxes=torch.from_numpy(boxes),
                    scores=torch.linspace(1, 0.5, len(boxes)))))
        metric.process({}, results)
        with np.errstate(divide='ignore'):  # log(0): no miss at all
            out = metric.compute_metrics(metric.results)
        num = self.info['val']['num_persons']
        self.assertEqual(num, sum(len(r['pred_instances']['bboxes'])
                                  for r in results))
        # Trapezoids from the first detection: recall 1/num to 1 at
        # precision 1. No false positive: log-average miss rate 0.
        self.assertAlmostEqual(out['mAP'], round(1 - 1 / num, 4))
        self.assertEqual(out['mMR'], 0)
        self.assertEqual(out['JI'], 1)

    def test_trains_and_evaluates(self):
        cfg = self._config()
        demo = Config.fromfile(DEMO)
        cfg.model = demo.model
        cfg.model.roi_head.bbox_head.num_classes = 1
        cfg.model.rpn_head.num_proposals = 60
        cfg.model.test_cfg.rcnn.max_per_img = 60
        cfg.train_dataloader.batch_size = 2
        cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1,
                             val_interval=1)
        cfg.param_scheduler = []
        cfg.optim_wrapper.optimizer.lr = 2e-4
        cfg.default_hooks.logger.interval = 1
        cfg.work_dir = osp.join(self.tmp.name, 'work')
        # mmengine keeps one visualizer per name for the whole process: a
        # name of its own keeps later Runners out of this deleted folder.
        cfg.visualizer.name = f'{__name__}-{uuid.uuid4().hex}'
        cfg.randomness = dict(seed=0)
        runner = Runner.from_cfg(cfg)
        runner.train()
        metrics = runner.val()
        self.assertEqual(set(metrics), {'crowd_human/mAP',
                                        'crowd_human/mMR',
                                        'crowd_human/JI'})
        for key, value in metrics.items():
            self.assertTrue(math.isfinite(value), key)
            self.assertGreaterEqual(value, 0, key)
            self.assertLessEqual(value, 1, key)
        # Two iterations from scratch: far from the perfect detections.
        self.assertGreater(metrics['crowd_human/mMR'], 0.5)
