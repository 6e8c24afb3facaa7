"""Tests of ``tools/demo.py``'s helpers: the recipe it trains, the epoch
override and the choice of the val images drawn at the end."""
import json
import os
import os.path as osp
import tempfile
from unittest import TestCase

from support.helpers import CONFIG_DIR, load_script
from mmengine.config import Config


def _load_demo():
    return load_script('tools', 'demo.py', name='demo_tool')


class TestDemo(TestCase):

    @classmethod
    def setUpClass(cls):
        cls.demo = _load_demo()

    def test_demo_config_keeps_a_constant_lr_after_warm_up(self):
        cfg = Config.fromfile(
            osp.join(CONFIG_DIR, 'sparse_rcnn_r18_fpn_shapes_demo.py'))
        self.assertEqual(cfg.train_cfg.max_epochs, 12)
        (warmup, ) = cfg.param_scheduler
        self.assertEqual(warmup.type, 'LinearLR')
        self.assertFalse(warmup.by_epoch)
        self.demo.scale_epochs(cfg, 24)
        self.assertEqual(cfg.train_cfg.max_epochs, 24)
        self.assertEqual(cfg.param_scheduler[0].end, 100)  # iterations

    def test_make_demo_trains_the_kmeans_recipe(self):
        """``make demo``'s config: the demo model with k-means initial boxes
        (and the hook that computes them), 18 epochs, validated and saved
        at the last one."""
        self.assertEqual(osp.basename(self.demo.DEFAULT_CONFIG),
                         'sparse_rcnn_r18_fpn_kmeans_18e_shapes_demo.py')
        cfg = Config.fromfile(self.demo.DEFAULT_CONFIG)
        base = Config.fromfile(
            osp.join(CONFIG_DIR, 'sparse_rcnn_r18_fpn_shapes_demo.py'))
        self.assertEqual(cfg.model.rpn_head.init_boxes, 'dataset')
        self.assertEqual(base.model.rpn_head.init_boxes, 'grid')
        self.assertEqual(cfg.default_hooks.proposal_init.type,
                         'DatasetProposalInitHook')
        epochs = cfg.train_cfg.max_epochs
        self.assertEqual(epochs, 18)
        self.assertEqual(epochs % cfg.train_cfg.val_interval, 0)
        self.assertEqual(epochs % cfg.default_hooks.checkpoint.interval, 0)
        # everything else is the base demo's
        for key in ('backbone', 'neck', 'roi_head', 'train_cfg', 'test_cfg'):
            self.assertEqual(cfg.model[key], base.model[key], key)
        self.assertEqual(cfg.optim_wrapper, base.optim_wrapper)
        self.assertEqual(cfg.param_scheduler, base.param_scheduler)

    def test_epoch_override_moves_the_lr_drops(self):
        cfg = Config.fromfile(
            osp.join(CONFIG_DIR, 'sparse_rcnn_r50_fpn_3x_coco.py'))
        self.demo.scale_epochs(cfg, 12)
        step = cfg.param_scheduler[-1]
        self.assertEqual((step.milestones, step.end), ([9, 11], 12))
        self.assertEqual(cfg.param_scheduler[0].end, 500)  # warm-up
        self.assertEqual(cfg.train_cfg.max_epochs, 12)
        self.demo.scale_epochs(cfg, 1)  # drops at 0 or at the end vanish
        self.assertEqual(cfg.param_scheduler[-1].milestones, [])

    def test_val_images_with_two_objects_or_more(self):
        coco = dict(
            images=[dict(id=i, file_name=f'{i:03d}.png')
                    for i in (4, 1, 3, 2)],
            annotations=[dict(id=k, image_id=i) for k, i in
                         enumerate([1, 2, 2, 3, 3, 3, 4, 4])])
        with tempfile.TemporaryDirectory() as root:
            os.makedirs(osp.join(root, 'annotations'))
            with open(osp.join(root, 'annotations', 'instances_val.json'),
                      'w') as f:
                json.dump(coco, f)
            self.assertEqual(self.demo.pick_val_images(root), [
                osp.join(root, 'val', '002.png'),
                osp.join(root, 'val', '003.png')
            ])
