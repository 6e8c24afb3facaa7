"""Training, resuming, distributed training and inference through the
command-line tools, on a tiny copy of the bundled shapes data (CPU)."""
import glob
import json
import os.path as osp
import sys
import tempfile
from unittest import TestCase

import torch
from mmengine.config import Config
from mmengine.hooks import EMAHook

from mmdet_sparse.apis import train_then_test
from mmdet_sparse.datasets import ensure_shapes_dataset
from tiny_runs import run_tool, write_tiny_config


def _losses(work_dir):
    """Total loss per iteration from every run in ``work_dir``."""
    losses = {}
    for path in glob.glob(osp.join(work_dir, '*', 'vis_data',
                                   'scalars.json')):
        with open(path) as f:
            for line in f:
                record = json.loads(line)
                if 'loss' in record:
                    losses[record['step']] = record['loss']
    return losses


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
        return write_tiny_config(self.tmp.name, self.data, name, flip,
                                 batch, epochs)

    def _train(self, config, work_dir, *extra):
        return run_tool([sys.executable, 'tools/train.py', config,
                         '--work-dir', work_dir, *extra])

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
        run_tool([sys.executable, 'tools/infer.py', self._config('full'),
                  ckpt, osp.join(self.data, 'val'), '--out-dir', out,
                  '--device', 'cpu'])
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
        run_tool(['bash', 'tools/dist_train.sh',
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

    def test_train_then_test_evaluates_the_saved_ema_weights(self):
        cfg = Config.fromfile(self._config('ema', epochs=2))
        cfg.custom_hooks.append(
            dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.004,
                 gamma=200, update_buffers=True, priority=49))
        cfg.work_dir = osp.join(self.tmp.name, 'ema')
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
