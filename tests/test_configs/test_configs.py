"""Every config in configs/ loads, builds, and uses this package's heads."""
import glob
import os
from unittest import TestCase

from mmengine.config import Config

from support.helpers import CONFIG_DIR, build_in_scope
from mmdet_sparse.registry import MODELS

CONFIGS = sorted(glob.glob(os.path.join(CONFIG_DIR, '*.py')))


class TestConfigs(TestCase):

    def test_found(self):
        names = {os.path.basename(c) for c in CONFIGS}
        for name in ('sparse_rcnn_r50_fpn_1x_coco.py',
                     'sparse_rcnn_r50_fpn_3x_coco.py',
                     'sparse_rcnn_r50_fpn_300pro_crop_3x_coco.py',
                     'sparse_rcnn_r101_fpn_3x_coco.py',
                     'sparse_rcnn_r101_fpn_300pro_crop_3x_coco.py'):
            self.assertIn(name, names)

    def test_every_config_builds_own_heads(self):
        for path in CONFIGS:
            with self.subTest(config=os.path.basename(path)):
                cfg = Config.fromfile(path)
                self.assertEqual(cfg.default_scope, 'mmdet_sparse')
                self.assertIn('mmdet_sparse', cfg.custom_imports['imports'])
                self.assertNotIn('_scope_', cfg.model)
                model = build_in_scope(cfg.model, cfg.default_scope, MODELS)
                for module in (model.rpn_head, model.roi_head,
                               *model.roi_head.bbox_head):
                    self.assertTrue(
                        type(module).__module__.startswith('mmdet_sparse.'),
                        msg=type(module).__module__)
                del model

    def test_hyper_parameters(self):
        base = Config.fromfile(
            os.path.join(CONFIG_DIR, 'sparse_rcnn_r50_fpn_1x_coco.py'))
        self.assertEqual(base.optim_wrapper.optimizer.type, 'AdamW')
        self.assertEqual(base.optim_wrapper.optimizer.lr, 2.5e-5)
        self.assertEqual(base.optim_wrapper.optimizer.weight_decay, 1e-4)
        self.assertEqual(base.optim_wrapper.clip_grad.max_norm, 1)
        self.assertEqual(base.auto_scale_lr.base_batch_size, 16)
        self.assertEqual(base.train_cfg.max_epochs, 12)
        three = Config.fromfile(
            os.path.join(CONFIG_DIR, 'sparse_rcnn_r50_fpn_3x_coco.py'))
        self.assertEqual(three.train_cfg.max_epochs, 36)
        self.assertEqual(three.param_scheduler[1].milestones, [27, 33])
        crop = Config.fromfile(
            os.path.join(CONFIG_DIR,
                         'sparse_rcnn_r50_fpn_300pro_crop_3x_coco.py'))
        self.assertEqual(crop.model.rpn_head.num_proposals, 300)
        self.assertEqual(crop.model.test_cfg.rcnn.max_per_img, 300)
        r101 = Config.fromfile(
            os.path.join(CONFIG_DIR, 'sparse_rcnn_r101_fpn_3x_coco.py'))
        self.assertEqual(r101.model.backbone.depth, 101)
