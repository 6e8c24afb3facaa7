"""AtomicCheckpointHook: checkpoints are complete before anything that
names them, outdated files go only after that, and training killed with
SIGKILL at any point of saving resumes to the same weights."""
import glob
import json
import os
import os.path as osp
import random
import signal
import sys
import tempfile
from unittest import TestCase, mock

import torch
from mmengine.config import Config
from mmengine.fileio import LocalBackend
from support.tool_runs import (TESTS, iteration_run, loss_records, losses,
                               run_tool)
from support.toy_runner import toy_runner

from support.helpers import CONFIG_DIR
from support.kill_points import KINDS
from mmdet_sparse.engine import AtomicCheckpointHook
from mmdet_sparse.engine.checkpoint_hook import TEMP_SUFFIX
from mmdet_sparse.registry import HOOKS


def _last(work_dir):
    """The path ``last_checkpoint`` names, or None."""
    path = osp.join(work_dir, 'last_checkpoint')
    if not osp.exists(path):
        return None
    with open(path) as f:
        return f.read().strip()


def _load(path):
    return torch.load(path, map_location='cpu', weights_only=True)


def _temp_files(folder):
    return [n for n in os.listdir(folder) if n.endswith(TEMP_SUFFIX)]


class TestAtomicCheckpointHook(TestCase):

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.work_dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def _watch_removals(self, check):
        """Patch ``os.remove`` to call ``check(path)`` before a checkpoint
        is deleted."""
        remove = os.remove

        def watched(path, *args, **kwargs):
            if str(path).endswith('.pth'):
                check(str(path))
            return remove(path, *args, **kwargs)

        return mock.patch('os.remove', watched)

    def test_every_config_uses_it(self):
        for path in sorted(glob.glob(osp.join(CONFIG_DIR, '*.py'))):
            cfg = Config.fromfile(path)
            hook = cfg.default_hooks.checkpoint
            self.assertIs(HOOKS.get(hook.type), AtomicCheckpointHook,
                          msg=osp.basename(path))

    def test_old_checkpoint_removed_only_after_the_new_is_named(self):
        removed = []

        def check(path):
            # The newest checkpoint is complete and last_checkpoint names
            # it before the previous one goes.
            last = _last(self.work_dir)
            self.assertNotEqual(osp.abspath(last), osp.abspath(path))
            ckpt = _load(last)
            self.assertEqual(ckpt['meta']['iter'],
                             int(osp.basename(path)[5:-4]) + 1)
            self.assertIn('optimizer', ckpt)
            removed.append(osp.basename(path))

        runner = toy_runner(
            self.work_dir,
            checkpoint=dict(by_epoch=False, interval=1, max_keep_ckpts=1))
        written, renamed = [], []
        put, replace = LocalBackend.put, os.replace

        def record_put(backend, obj, filepath):
            written.append(osp.basename(str(filepath)))
            return put(backend, obj, filepath)

        def checked_replace(src, dst):
            replace(src, dst)
            renamed.append(osp.basename(dst))
            # After every rename last_checkpoint names a complete file.
            last = _last(self.work_dir)
            if last is not None:
                self.assertIn('state_dict', _load(last))

        with self._watch_removals(check), \
                mock.patch.object(LocalBackend, 'put', record_put), \
                mock.patch('os.replace', checked_replace):
            runner.train()
        self.assertEqual(renamed[:4], ['iter_1.pth', 'last_checkpoint',
                                       'iter_2.pth', 'last_checkpoint'])
        self.assertEqual(len(renamed), 20)
        self.assertEqual(removed, [f'iter_{i}.pth' for i in range(1, 10)])
        # Never written in place: every write went to a temporary name.
        self.assertEqual(written,
                         [f'.iter_{i}.pth{TEMP_SUFFIX}' for i in range(1, 11)])
        names = sorted(n for n in os.listdir(self.work_dir)
                       if n.endswith('.pth'))
        self.assertEqual(names, ['iter_10.pth'])
        self.assertEqual(osp.basename(_last(self.work_dir)), 'iter_10.pth')
        self.assertEqual(_temp_files(self.work_dir), [])
        # The saved list of checkpoints to keep is the one kept.
        hub = _load(osp.join(self.work_dir, 'iter_10.pth'))['message_hub']
        self.assertEqual(hub['runtime_info']['keep_ckpt_ids'], [10])
        self.assertEqual(hub['runtime_info']['ckpts_pending_removal'],
                         [osp.join(self.work_dir, 'iter_9.pth')])

    def test_save_best_replaces_the_previous_best_last(self):
        removed = []

        def check(path):
            name = osp.basename(path)
            last = _load(_last(self.work_dir))
            best = last['message_hub']['runtime_info']['best_ckpt']
            if name.startswith('best_'):
                # The new best is complete and the checkpoint
                # last_checkpoint names records it.
                self.assertNotEqual(best, path)
                self.assertEqual(_load(best)['meta']['epoch'],
                                 last['meta']['epoch'])
            removed.append(name)

        runner = toy_runner(
            self.work_dir, max_epochs=4,
            checkpoint=dict(interval=1, max_keep_ckpts=1, save_best='acc'),
            val_scores=[0.1, 0.3, 0.2, 0.5])
        with self._watch_removals(check):
            runner.train()
        self.assertEqual(removed, [
            'epoch_1.pth', 'best_acc_epoch_1.pth', 'epoch_2.pth',
            'epoch_3.pth', 'best_acc_epoch_2.pth'
        ])
        names = sorted(n for n in os.listdir(self.work_dir)
                       if n.endswith('.pth'))
        self.assertEqual(names, ['best_acc_epoch_4.pth', 'epoch_4.pth'])
        self.assertEqual(_temp_files(self.work_dir), [])
        ckpt = _load(osp.join(self.work_dir, 'epoch_4.pth'))
        info = ckpt['message_hub']['runtime_info']
        self.assertEqual(info['best_score'], 0.5)
        self.assertEqual(osp.basename(info['best_ckpt']),
                         'best_acc_epoch_4.pth')

    def test_resume_cleans_up_after_a_killed_save(self):
        """A process stopped after writing iter_3.pth and last_checkpoint
        but before deleting iter_2.pth, with temporary files of an
        unfinished next save: the resumed run deletes both."""
        cfg = dict(by_epoch=False, interval=1, max_keep_ckpts=1)
        runner = toy_runner(self.work_dir, checkpoint=cfg)

        class Stop(Exception):
            pass

        def stop(path):
            if osp.basename(path) == 'iter_2.pth':
                raise Stop

        with self._watch_removals(stop), self.assertRaises(Stop):
            runner.train()
        self.assertEqual(osp.basename(_last(self.work_dir)), 'iter_3.pth')
        for name in ('iter_4.pth', 'last_checkpoint'):
            with open(osp.join(self.work_dir, f'.{name}{TEMP_SUFFIX}'),
                      'wb') as f:
                f.write(b'\x80\x02trunc')
        self.assertTrue(osp.exists(osp.join(self.work_dir, 'iter_2.pth')))

        resumed = toy_runner(self.work_dir, checkpoint=cfg, resume=True)
        resumed.train()
        self.assertEqual(resumed.recorder.iters[0][0], 4)
        names = sorted(n for n in os.listdir(self.work_dir)
                       if n.endswith('.pth'))
        self.assertEqual(names, ['iter_10.pth'])
        self.assertEqual(_temp_files(self.work_dir), [])

    def test_published_checkpoint_is_written_atomically(self):
        runner = toy_runner(
            self.work_dir, max_epochs=1,
            checkpoint=dict(interval=1, published_keys=['meta',
                                                        'state_dict']))
        runner.train()
        published = glob.glob(osp.join(self.work_dir, 'epoch_1-*.pth'))
        self.assertEqual(len(published), 1)
        self.assertEqual(sorted(_load(published[0])), ['meta', 'state_dict'])
        self.assertEqual(_temp_files(self.work_dir), [])


class TestKilledWhileSaving(TestCase):
    """SIGKILL real ``tools/train.py --resume`` processes at seeded random
    points of checkpoint saving (``kill_points.py``, ``kill_driver.py``)."""

    def test_every_kill_resumes_to_the_same_weights(self):
        ref_config, ref_dir = iteration_run()
        ref = _load(osp.join(ref_dir, _last_name(ref_dir)))
        ref_losses = losses(ref_dir)
        rng = random.Random(0)
        kinds = list(KINDS)
        rng.shuffle(kinds)
        plan = [f'{kind}:{rng.choice([1, 2])}' for kind in kinds]

        with tempfile.TemporaryDirectory() as tmp:
            work_dir = osp.join(tmp, 'work')
            result = osp.join(tmp, 'result.json')
            run_tool([sys.executable,
                      osp.join(TESTS, 'support', 'kill_driver.py'),
                      _kill_config(tmp, ref_config), work_dir, result,
                      *plan],
                     env=dict(CKPT_KILL_LOG=osp.join(tmp, 'kills.log')))
            with open(result) as f:
                runs = json.load(f)
            with open(osp.join(tmp, 'kills.log')) as f:
                killed_at = [line.split()[0] for line in f]

            self.assertEqual(killed_at, plan)
            progress = []
            for run in runs[:-1]:
                msg = f'killed at {run["spec"]}: {run}'
                self.assertEqual(run.get('signal'), signal.SIGKILL, msg=msg)
                if 'last' in run:
                    # last_checkpoint names a complete checkpoint.
                    self.assertNotIn('last_error', run, msg=msg)
                    progress.append(run['last_iter'])
                # At most one checkpoint more than max_keep_ckpts=1.
                self.assertLessEqual(
                    sum(n.endswith('.pth') for n in run['files']), 2,
                    msg=msg)
            # Progress is never lost.
            self.assertEqual(progress, sorted(progress))
            self.assertGreater(len(set(progress)), 3)
            with open(runs[-1]['log']) as f:
                self.assertEqual(runs[-1].get('exit'), 0, msg=f.read()[-3000:])

            final = _load(runs[-1]['last'])
            self.assertEqual(final['meta']['iter'], ref['meta']['iter'])
            for key, value in ref['state_dict'].items():
                self.assertTrue(torch.equal(final['state_dict'][key], value),
                                msg=key)
            for step, loss in loss_records(work_dir):
                self.assertAlmostEqual(loss, ref_losses[step],
                                       delta=1e-6 * abs(ref_losses[step]),
                                       msg=f'iteration {step}')
            names = sorted(n for n in os.listdir(work_dir)
                           if n.endswith('.pth'))
            self.assertEqual(names, [_last_name(ref_dir)])
            self.assertEqual(_temp_files(work_dir), [])


def _last_name(work_dir):
    return osp.basename(_last(work_dir))


def _kill_config(tmp, base):
    """The config ``base`` keeping one checkpoint and importing the kill
    points."""
    path = osp.join(tmp, 'kill.py')
    with open(path, 'w') as f:
        f.write(f"_base_ = '{base}'\n"
                "custom_imports = dict(imports=['mmdet_sparse', "
                "'support.e2e_hooks', 'support.kill_points'], "
                "allow_failed_imports=False)\n"
                'default_hooks = dict(checkpoint=dict(max_keep_ckpts=1))\n')
    return path
