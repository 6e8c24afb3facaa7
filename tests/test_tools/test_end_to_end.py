"""Training, resuming, distributed training and inference through the
command-line tools, on a tiny copy of the bundled shapes data (CPU)."""
import glob
import json
import os.path as osp
import sys
import tempfile
from unittest import TestCase

import torch
from support.helpers import REPO
from mmengine.config import Config
from support.tool_runs import losses as _losses
from support.tool_runs import run_tool as _run
from support.tool_runs import data_config, train_command, write_config
from mmengine.hooks import EMAHook

from mmdet_sparse.apis import train_then_test
from mmdet_sparse.datasets import ensure_shapes_dataset

QUERYINST_CONFIG = """
_base_ = '{repo}/configs/queryinst/queryinst_r18_fpn_shapes_demo.py'
{data_cfg}
custom_hooks = [dict(type='RNGStateHook')]
train_cfg = dict(max_epochs=2, val_interval=100)
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=2, save_best=None))
log_processor = dict(window_size=1)
randomness = dict(seed=0)
"""

class TestEndToEnd(TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.data = osp.join(cls.tmp.name, 'shapes')
        ensure_shapes_dataset(cls.data, num_train=8, num_val=4)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def _config(self, name, flip=0.5, batch=4, epochs=4):
        return write_config(osp.join(self.tmp.name, f'{name}.py'),
                            self.data, flip=flip, batch=batch, epochs=epochs)

    def _train(self, config, work_dir, *extra):
        return _run(train_command(config, work_dir, *extra))

    def test_resume_continues_the_same_run(self):
        full = osp.join(self.tmp.name, 'full')
        self._train(self._config('full', epochs=4), full)
        part = osp.join(self.tmp.name, 'part')
        self._train(self._config('part', epochs=2), part)
        self.assertEqual(sorted(_losses(part)), [1, 2, 3, 4])
        proc = self._train(self._config('rest', epochs=4), part, '--resume')
        self.assertIn('resumed', proc.stdout + proc.stderr)
        ref, resumed = _losses(full), _losses(part)
        self.assertEqual(sorted(ref), list(range(1, 9)))
        self.assertEqual(sorted(resumed), list(range(1, 9)))
        for step in range(5, 9):
            self.assertAlmostEqual(resumed[step], ref[step], delta=1e-5 *
                                   abs(ref[step]), msg=f'iteration {step}')

        # Inference with the trained checkpoint on the val images.
        out = osp.join(self.tmp.name, 'infer')
        ckpt = osp.join(full, 'epoch_4.pth')
        _run([sys.executable, 'tools/infer.py', self._config('full'), ckpt,
              osp.join(self.data, 'val'), '--out-dir', out, '--device',
              'cpu'])
        with open(osp.join(out, 'results.json')) as f:
            records = json.load(f)
        self.assertEqual(len({r['file_name'] for r in records}), 4)
        self.assertEqual(len(records), 4 * 40)  # every box of every image
        for r in records:
            self.assertIn(r['category_id'], range(1, 6))
            self.assertEqual(len(r['bbox']), 4)
        self.assertEqual(len(glob.glob(osp.join(out, 'vis', '*'))), 4)

    def test_two_processes_equal_one_with_the_same_global_batch(self):
        one = osp.join(self.tmp.name, 'one')
        self._train(self._config('one', flip=0.0, batch=4, epochs=1), one)
        two = osp.join(self.tmp.name, 'two')
        _run(['bash', 'tools/dist_train.sh',
              self._config('two', flip=0.0, batch=2, epochs=1), '2',
              '--work-dir', two, '--cfg-options',
              'env_cfg.dist_cfg.backend=gloo'],
             env=dict(PYTHON=sys.executable, PORT='29611'))
        with open(osp.join(one, 'first_loss_rank0.json')) as f:
            ref = json.load(f)
        ranks = []
        for rank in range(2):
            with open(osp.join(two, f'first_loss_rank{rank}.json')) as f:
                ranks.append(json.load(f))
        for key, value in ref.items():
            if 'loss' not in key:
                continue
            # Each process normalises by the box count averaged over
            # processes, so the mean of the process losses is the loss of
            # the whole batch.
            mean = (ranks[0][key] + ranks[1][key]) / 2
            self.assertAlmostEqual(mean, value, delta=1e-4 * abs(value),
                                   msg=key)

    def test_queryinst_trains_and_evaluates_boxes_and_masks(self):
        """QueryInst on the shapes data (4 iterations), evaluated with
        CocoMetric on boxes and masks, then run by the inference tool."""
        import torch
        from mmdet_sparse.apis import (build_inferencer, collect_inputs,
                                       run_inference)
        from pycocotools import mask as mask_utils
        path = osp.join(self.tmp.name, 'queryinst.py')
        with open(path, 'w') as f:
            f.write(QUERYINST_CONFIG.format(
                repo=REPO, data_cfg=data_config(self.data, masks=True)))
        cfg = Config.fromfile(path)
        cfg.work_dir = osp.join(self.tmp.name, 'queryinst')
        cfg.visualizer.name = 'queryinst_e2e'  # its own (process-wide)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            metrics, trainer, _ = train_then_test(cfg)
            self.assertEqual(type(trainer.model.roi_head.mask_head[0])
                             .__module__.split('.')[0], 'mmdet_sparse')
            for key in ('coco/bbox_mAP', 'coco/segm_mAP'):
                self.assertIn(key, metrics)
                self.assertTrue(0 <= metrics[key] <= 1, metrics)

            out = osp.join(self.tmp.name, 'queryinst_infer')
            inferencer = build_inferencer(
                path, osp.join(cfg.work_dir, 'epoch_2.pth'), 'cpu')
            run_inference(inferencer,
                          collect_inputs(osp.join(self.data, 'val')), out)
        finally:
            torch.set_num_threads(threads)
        with open(osp.join(out, 'results.json')) as f:
            records = json.load(f)
        self.assertEqual(len(records), 4 * 40)
        for record in records:
            mask = mask_utils.decode(
                dict(record['segmentation'],
                     counts=record['segmentation']['counts'].encode()))
            self.assertEqual(mask.shape, (256, 256))  # the original size
        self.assertEqual(len(glob.glob(osp.join(out, 'vis', '*'))), 4)

    def test_train_then_test_evaluates_the_saved_ema_weights(self):
        cfg = Config.fromfile(self._config('ema', epochs=2))
        cfg.custom_hooks.append(
            dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.004,
                 gamma=200, update_buffers=True, priority=49))
        cfg.work_dir = osp.join(self.tmp.name, 'ema')
        cfg.visualizer.name = 'ema_e2e'  # its own (process-wide)
        metrics, trainer, tester = train_then_test(cfg, vis_dir='vis')
        self.assertIn('coco/bbox_mAP', metrics)
        ema = next(h for h in trainer.hooks if isinstance(h, EMAHook))
        averaged = ema.ema_model.module.state_dict()
        raw = trainer.model.state_dict()
        tested = tester.model.state_dict()
        self.assertEqual(tested.keys(), averaged.keys())
        for key, value in tested.items():
            self.assertTrue(torch.equal(value, averaged[key]), msg=key)
        # The averaged weights are not the last ones: the test would
        # notice evaluating the raw weights.
        self.assertTrue(any(not torch.equal(raw[k], averaged[k])
                            for k in averaged if raw[k].is_floating_point()))
        drawn = glob.glob(osp.join(cfg.work_dir, tester.timestamp, 'vis',
                                   '*'))
        self.assertEqual(len(drawn), 4)
