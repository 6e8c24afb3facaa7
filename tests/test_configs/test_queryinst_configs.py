"""The QueryInst configs: each loads and builds its detector with this
package's heads, and each changes only what QueryInst adds to the Sparse
R-CNN config it extends."""
import glob
import os

import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper

from mmdet.testing import demo_mm_inputs

from support.helpers import (CONFIG_DIR, MMDET_QUERYINST_DIR,
                             OneThreadTestCase, build_in_scope)
from mmdet_sparse.registry import MODELS

QUERYINST_DIR = os.path.join(CONFIG_DIR, 'queryinst')
CONFIGS = sorted(glob.glob(os.path.join(QUERYINST_DIR, '*.py')))
ZOO = ('queryinst_r50_fpn_1x_coco.py',
       'queryinst_r50_fpn_ms-480-800-3x_coco.py',
       'queryinst_r50_fpn_300-proposals_crop-ms-480-800-3x_coco.py',
       'queryinst_r101_fpn_ms-480-800-3x_coco.py',
       'queryinst_r101_fpn_300-proposals_crop-ms-480-800-3x_coco.py')
SWIN = 'queryinst_swin_t_fpn_ms-480-800-3x_coco.py'


def _load(name: str) -> Config:
    return Config.fromfile(os.path.join(QUERYINST_DIR, name))


def _own(module) -> bool:
    return type(module).__module__.startswith('mmdet_sparse.')


class TestQueryInstConfigs(OneThreadTestCase):

    def _check_model(self, cfg: Config, model) -> None:
        self.assertEqual(type(model).__name__, 'QueryInst')
        roi = model.roi_head
        self.assertTrue(roi.with_mask)
        for module in (model.rpn_head, roi, *roi.bbox_head, *roi.mask_head,
                       *(h.instance_interactive_conv for h in roi.mask_head)):
            self.assertTrue(_own(module), msg=type(module))
        self.assertEqual(len(roi.mask_head), roi.num_stages)
        self.assertTrue(cfg.model.data_preprocessor.pad_mask)
        for stage_cfg in roi.train_cfg:
            self.assertEqual(stage_cfg['mask_size'], 28)
        self.assertEqual(roi.test_cfg['mask_thr_binary'], 0.5)
        self.assertEqual(cfg.val_evaluator.metric, ['bbox', 'segm'])
        for loader in (cfg.train_dataloader, cfg.val_dataloader):
            load = [t for t in loader.dataset.pipeline
                    if t.type == 'LoadAnnotations']
            self.assertTrue(load and load[0].with_mask)

    def test_every_config_builds_own_heads(self):
        names = {os.path.basename(c) for c in CONFIGS}
        self.assertTrue(set(ZOO) <= names, names)
        self.assertIn(SWIN, names)
        for path in CONFIGS:
            if os.path.basename(path) == SWIN:
                continue  # built for real in test_swin_t
            with self.subTest(config=os.path.basename(path)):
                cfg = Config.fromfile(path)
                self.assertEqual(cfg.default_scope, 'mmdet_sparse')
                cfg.model.backbone.init_cfg = None
                # Parameters without storage: the modules and their shapes
                # are built, at no cost.
                with torch.device('meta'):
                    model = build_in_scope(cfg.model, cfg.default_scope,
                                           MODELS)
                self._check_model(cfg, model)

    def test_hyper_parameters_match_mmdetection(self):
        """Each zoo config's settings equal MMDetection's, up to the
        package's own module names."""
        for name in ZOO:
            with self.subTest(config=name):
                ours = _load(name)
                ref = Config.fromfile(os.path.join(MMDET_QUERYINST_DIR, name))
                self.assertEqual(ours.model.rpn_head.num_proposals,
                                 ref.model.rpn_head.num_proposals)
                self.assertEqual(ours.model.test_cfg, ref.model.test_cfg)
                self.assertEqual(ours.model.backbone.depth,
                                 ref.model.backbone.depth)
                mask_head = dict(ours.model.roi_head.mask_head)
                ref_mask_head = dict(ref.model.roi_head.mask_head[0])
                self.assertEqual(mask_head, ref_mask_head)
                extractor = dict(ours.model.roi_head.mask_roi_extractor)
                ref_extractor = dict(ref.model.roi_head.mask_roi_extractor)
                extractor.pop('type'), ref_extractor.pop('type')
                self.assertEqual(extractor, ref_extractor)
                for stage in ref.model.train_cfg.rcnn:
                    self.assertEqual(
                        dict(ours.model.train_cfg.rcnn, mask_size=28),
                        dict(stage))
                self.assertEqual(ours.optim_wrapper.optimizer.lr,
                                 ref.optim_wrapper.optimizer.lr)
                self.assertEqual(ours.optim_wrapper.optimizer.weight_decay,
                                 ref.optim_wrapper.optimizer.weight_decay)
                self.assertEqual(ours.optim_wrapper.clip_grad,
                                 ref.optim_wrapper.clip_grad)
                self.assertEqual(ours.optim_wrapper.paramwise_cfg,
                                 ref.optim_wrapper.paramwise_cfg)
                self.assertEqual(ours.param_scheduler, ref.param_scheduler)
                self.assertEqual(ours.train_cfg.max_epochs,
                                 ref.train_cfg.max_epochs)
                ours_pipe = [t.type for t in ours.train_pipeline]
                ref_pipe = [t.type for t in ref.train_pipeline]
                self.assertEqual(ours_pipe, ref_pipe)

    def test_swin_t(self):
        """The Swin-T config builds, sets its optimiser groups, and trains
        a step on a tiny image with masks."""
        cfg = _load(SWIN)
        cfg.model.backbone.init_cfg = None
        cfg.model.rpn_head.num_proposals = 4
        model = build_in_scope(cfg.model, 'mmdet_sparse', MODELS)
        self._check_model(cfg, model)
        names = {id(p): n for n, p in model.named_parameters()}
        optimizer = build_optim_wrapper(model, cfg.optim_wrapper).optimizer
        groups = {names[id(p)]: (g['lr'], g['weight_decay'])
                  for g in optimizer.param_groups for p in g['params']}
        msa = 'backbone.stages.0.blocks.0.attn.w_msa.'
        self.assertEqual(groups[msa + 'relative_position_bias_table'],
                         (1e-5, 0.0))
        self.assertEqual(groups[msa + 'qkv.weight'], (1e-5, 1e-4))
        self.assertEqual(groups['roi_head.bbox_head.0.attention_norm.weight'],
                         (1e-4, 0.0))
        self.assertEqual(groups['roi_head.mask_head.0.conv_logits.weight'],
                         (1e-4, 1e-4))

        torch.manual_seed(0)
        packed = demo_mm_inputs(
            batch_size=1, image_shapes=[(3, 64, 96)], num_items=[2],
            num_classes=80, with_mask=True)
        model.train()
        data = model.data_preprocessor(packed, True)
        losses = model(**data, mode='loss')
        self.assertTrue(torch.isfinite(losses['s5.loss_mask']))
        losses['s5.loss_mask'].backward()
        # The last stage's mask loss reaches the Swin backbone.
        self.assertTrue(all(p.grad is not None
                            for p in model.backbone.parameters()))
