"""AtomicCheckpointHook on a full disk: a failed write leaves no partial
file, too little room stops before writing, the error names the folder,
the space needed and free and the checkpoint kept, all ranks raise it, and
published checkpoints are read onto the CPU under ``weights_only``."""
import errno
import glob
import json
import os
import os.path as osp
import pickle
import shutil
import subprocess
import tempfile
from unittest import TestCase, mock

import torch
from mmengine.fileio import LocalBackend
from test_checkpoint_hook import _last, _load, _temp_files
from support.tool_runs import run_two_ranks
from support.toy_runner import toy_runner

from mmdet_sparse.engine import AtomicCheckpointHook
from mmdet_sparse.engine import checkpoint_hook
from mmdet_sparse.engine.checkpoint_hook import TEMP_SUFFIX, write_atomically

NO_SPACE = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

# One rank of a 2-process gloo run: the toy runner trains twice; rank 0
# finds the disk full at the free-space check before epoch_2.pth ('check'),
# then at its write ('write'). Each rank's outcomes go to a JSON file.
DIST_WORKER = r'''
import errno, json, os, os.path as osp, shutil, sys
from unittest import mock
import torch.distributed as dist
from mmengine.fileio import LocalBackend
from support.toy_runner import toy_runner

tmp, result = sys.argv[1:]
dist.init_process_group('gloo')
rank = dist.get_rank()
put, usage = LocalBackend.put, shutil.disk_usage
outs = {}
for where in ('check', 'write'):
    work_dir = osp.join(tmp, where)

    def fake_put(backend, obj, filepath):
        if where == 'write' and rank == 0 and '.epoch_2' in str(filepath):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return put(backend, obj, filepath)

    def fake_usage(path):
        full = where == 'check' and osp.exists(
            osp.join(work_dir, 'epoch_1.pth'))
        return usage(path)._replace(free=0) if full else usage(path)

    runner = toy_runner(work_dir,
                        checkpoint=dict(interval=1, max_keep_ckpts=1))
    # RNGStateHook gathers inside Runner.save_checkpoint, which mmengine
    # runs on rank 0 only; left out of this test of the checkpoint hook.
    runner._hooks = [
        h for h in runner.hooks if type(h).__name__ != 'RNGStateHook']
    try:
        with mock.patch.object(LocalBackend, 'put', fake_put), \
                mock.patch('shutil.disk_usage', fake_usage):
            runner.train()
        outs[where] = dict(finished=True)
    except Exception as exc:
        outs[where] = dict(error=type(exc).__name__, message=str(exc))
with open(f'{result}.{rank}', 'w') as f:
    json.dump(outs, f)
dist.destroy_process_group()
'''


class _MakeDir:
    """Unpickles as ``os.makedirs(path)``: code run by loading a file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return os.makedirs, (self.path, )


class TestCheckpointDiskFull(TestCase):

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.work_dir = self.tmp.name

    def _ckpt(self, name):
        return osp.join(self.work_dir, name)

    def _names(self, folder=None):
        return sorted(n for n in os.listdir(folder or self.work_dir)
                      if n.endswith('.pth'))

    def _check_message(self, err, needed=None, free=None):
        """``err`` is the clear error: its message names the folder, the
        checkpoint kept and what to do (and the space needed and free)."""
        msg = str(err)
        self.assertEqual(type(err).__name__, 'CheckpointSpaceError')
        self.assertEqual(err.errno, errno.ENOSPC)
        self.assertIn(f'Cannot save epoch_2.pth in {self.work_dir}', msg)
        self.assertIn(f'The last complete checkpoint, '
                      f'{self._ckpt("epoch_1.pth")} (named by '
                      f'{self._ckpt("last_checkpoint")}), is intact', msg)
        self.assertIn('max_keep_ckpts', msg)
        self.assertIn('one checkpoint more', msg)
        if needed is not None:
            size = checkpoint_hook.format_size
            self.assertIn(f'It needs about {size(needed)} (the size of '
                          'epoch_1.pth)', msg)
            self.assertIn(f'{size(free)} are free', msg)
            self.assertIn(f'free at least {size(needed - free)}', msg)

    def _check_intact(self, folder=None):
        """Only epoch_1.pth is there, complete and named by
        last_checkpoint; no temporary file is left."""
        folder = folder or self.work_dir
        self.assertEqual(_temp_files(folder), [])
        self.assertEqual(self._names(folder), ['epoch_1.pth'])
        self.assertEqual(_last(self.work_dir), osp.join(folder,
                                                        'epoch_1.pth'))
        self.assertEqual(
            _load(osp.join(folder, 'epoch_1.pth'))['meta']['epoch'], 1)

    def test_failed_write_leaves_no_partial_file(self):
        put = LocalBackend.put
        partial = []

        def half_then_full(backend, obj, filepath):
            if osp.basename(str(filepath)) == f'.epoch_2.pth{TEMP_SUFFIX}':
                with open(filepath, 'wb') as f:
                    f.write(obj[:len(obj) // 2])
                partial.append(str(filepath))
                raise NO_SPACE
            return put(backend, obj, filepath)

        runner = toy_runner(self.work_dir,
                            checkpoint=dict(interval=1, max_keep_ckpts=1))
        with mock.patch.object(LocalBackend, 'put', half_then_full), \
                self.assertRaises(OSError) as ctx:
            runner.train()
        self.assertEqual(len(partial), 1)
        self._check_intact()
        self._check_message(ctx.exception)
        self.assertIn('the disk is full', str(ctx.exception))
        self.assertIs(ctx.exception.__cause__, NO_SPACE)

    def _run_with_free_space(self, free_of):
        """Train 2 epochs with ``shutil.disk_usage`` reporting
        ``free_of(size of epoch_1.pth or None)`` free bytes; return the
        folders asked about and the files written."""
        asked, written = [], []
        usage, put = shutil.disk_usage, LocalBackend.put

        def fake_usage(path):
            asked.append(osp.abspath(path))
            first = self._ckpt('epoch_1.pth')
            size = osp.getsize(first) if osp.exists(first) else None
            return usage(path)._replace(free=free_of(size))

        def record_put(backend, obj, filepath):
            written.append(osp.basename(str(filepath)))
            return put(backend, obj, filepath)

        runner = toy_runner(self.work_dir,
                            checkpoint=dict(interval=1, max_keep_ckpts=1))
        with mock.patch('shutil.disk_usage', fake_usage), \
                mock.patch.object(LocalBackend, 'put', record_put):
            runner.train()
        return asked, written

    def test_too_little_space_stops_before_writing(self):
        sizes = []

        def one_byte_short(size):
            if size is None:
                return 10**12
            sizes.append(size)
            return size - 1

        with self.assertRaises(OSError) as ctx:
            self._run_with_free_space(one_byte_short)
        self._check_intact()
        self._check_message(ctx.exception, sizes[-1], sizes[-1] - 1)
        self.assertIn('nothing was written', str(ctx.exception))
        self.assertIsNone(ctx.exception.__cause__)

    def test_enough_space_saves(self):
        asked, written = self._run_with_free_space(
            lambda size: 10**12 if size is None else size)
        self.assertEqual(self._names(), ['epoch_2.pth'])
        self.assertEqual(_last(self.work_dir), self._ckpt('epoch_2.pth'))
        self.assertEqual(_temp_files(self.work_dir), [])
        self.assertEqual(written, [f'.epoch_{i}.pth{TEMP_SUFFIX}'
                                   for i in (1, 2)])
        # The folder's free space was checked before each checkpoint.
        self.assertEqual(asked, [self.work_dir] * 2)

    def test_first_checkpoint_checked_against_the_weights(self):
        model = torch.nn.Linear(2, 1)
        # Weights and the SGD state (none: no momentum) in bytes.
        weights = sum(p.numel() * p.element_size()
                      for p in model.parameters())
        with self.assertRaises(OSError) as ctx:
            self._run_with_free_space(lambda size: weights - 1)
        msg = str(ctx.exception)
        self.assertEqual(self._names(), [])
        self.assertEqual(_temp_files(self.work_dir), [])
        self.assertIn(f'Cannot save epoch_1.pth in {self.work_dir}', msg)
        self.assertIn('the size of the model weights and optimizer state',
                      msg)
        self.assertIn('No complete checkpoint has been saved yet', msg)

    def test_write_atomically_failure_keeps_the_old_file(self):
        path = self._ckpt('last_checkpoint')
        with open(path, 'w') as f:
            f.write('old')

        def write(f):
            f.write('new, partly')
            raise NO_SPACE

        with self.assertRaises(OSError) as ctx:
            write_atomically(path, write, mode='w')
        self.assertIs(ctx.exception, NO_SPACE)
        with open(path) as f:
            self.assertEqual(f.read(), 'old')
        self.assertEqual(os.listdir(self.work_dir), ['last_checkpoint'])

    def _trained_hook(self):
        """A Runner trained for one epoch (epoch_1.pth) and its hook, set
        to publish ``meta`` and ``state_dict``."""
        runner = toy_runner(self.work_dir, max_epochs=1)
        runner.train()
        hook = next(h for h in runner.hooks
                    if isinstance(h, AtomicCheckpointHook))
        hook.published_keys = ['meta', 'state_dict']
        return runner, hook

    def test_publish_reads_gpu_checkpoints_onto_the_cpu(self):
        runner, hook = self._trained_hook()
        path = self._ckpt('epoch_1.pth')
        ckpt = _load(path)
        # As written on a GPU: every storage is tagged 'cuda:0'.
        with mock.patch('torch.serialization.location_tag',
                        lambda storage: 'cuda:0'):
            torch.save(ckpt, path)
        hook._publish_model(runner, path)
        published = glob.glob(self._ckpt('epoch_1-*.pth'))
        self.assertEqual(len(published), 1)
        locations = []

        def record(storage, location):
            locations.append(location)
            return storage

        loaded = torch.load(published[0], map_location=record,
                            weights_only=True)
        self.assertEqual(set(locations), {'cpu'})
        for key, value in ckpt['state_dict'].items():
            self.assertTrue(torch.equal(loaded['state_dict'][key], value))
        self.assertEqual(_temp_files(self.work_dir), [])

    def test_publish_never_runs_code_from_the_file(self):
        runner, hook = self._trained_hook()
        path = self._ckpt('epoch_1.pth')
        marker = self._ckpt('code_ran')
        ckpt = _load(path)
        ckpt['meta']['payload'] = _MakeDir(marker)
        torch.save(ckpt, path)
        # Even where the environment turns weights_only off by default.
        with mock.patch.dict(os.environ,
                             TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD='1'), \
                self.assertRaises(pickle.UnpicklingError):
            hook._publish_model(runner, path)
        self.assertFalse(osp.exists(marker))
        self.assertEqual(glob.glob(self._ckpt('epoch_1-*.pth')), [])

    def test_publish_on_a_full_disk_leaves_no_partial_file(self):
        runner, hook = self._trained_hook()
        write_atomically = checkpoint_hook.write_atomically

        def full(path, write, mode='wb'):

            def write_then_fail(f):
                write(f)
                raise NO_SPACE

            return write_atomically(path, write_then_fail, mode)

        with mock.patch.object(checkpoint_hook, 'write_atomically', full), \
                self.assertRaises(OSError) as ctx:
            hook._publish_model(runner, self._ckpt('epoch_1.pth'))
        self.assertEqual(type(ctx.exception).__name__,
                         'CheckpointSpaceError')
        self.assertIn(self._ckpt('epoch_1.pth'), str(ctx.exception))
        self.assertIn(f'in {self.work_dir}', str(ctx.exception))
        self.assertEqual(self._names(), ['epoch_1.pth'])
        self.assertEqual(_temp_files(self.work_dir), [])

    def test_every_rank_raises(self):
        """Rank 0 alone writes; when it finds the disk full (at the check
        or at the write), rank 1 raises the same error instead of training
        on into a collective that rank 0 never joins."""
        script = self._ckpt('worker.py')
        with open(script, 'w') as f:
            f.write(DIST_WORKER)
        result = self._ckpt('result.json')
        outputs = run_two_ranks(script, [self.work_dir, result])
        outs = []
        for rank, output in enumerate(outputs):
            self.assertTrue(osp.exists(f'{result}.{rank}'),
                            msg=output[-3000:])
            with open(f'{result}.{rank}') as f:
                outs.append(json.load(f))
        self.assertEqual(outs[1], outs[0])
        for where in ('check', 'write'):
            self.assertEqual(outs[0][where].get('error'),
                             'CheckpointSpaceError', msg=outs)
            work_dir = self._ckpt(where)
            self.assertEqual(self._names(work_dir), ['epoch_1.pth'])
            self.assertEqual(_temp_files(work_dir), [])

    def test_real_full_file_system(self):
        """A 1 MiB tmpfs: the disk fills between the free-space check and
        the write of epoch_2.pth (another job writing); the write fails
        with the kernel's ENOSPC, and the space of the partial file comes
        back."""
        mount = self._ckpt('small_disk')
        os.mkdir(mount)
        proc = subprocess.run(
            ['mount', '-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mount],
            capture_output=True)
        if proc.returncode:
            self.skipTest(f'cannot mount a tmpfs here: '
                          f'{proc.stderr.decode().strip()}')
        self.addCleanup(subprocess.run, ['umount', mount])
        out_dir = osp.join(mount, osp.basename(self.work_dir))
        put = LocalBackend.put
        free_before = []

        def fill_then_put(backend, obj, filepath):
            if osp.basename(str(filepath)) == f'.epoch_2.pth{TEMP_SUFFIX}':
                # Another job takes all but half a checkpoint.
                free = shutil.disk_usage(mount).free
                with open(osp.join(mount, 'other_job'), 'wb') as f:
                    f.write(b'\0' * (free - len(obj) // 2))
                free_before.append(shutil.disk_usage(mount).free)
                self.assertLess(free_before[0], len(obj))
            return put(backend, obj, filepath)

        runner = toy_runner(
            self.work_dir,
            checkpoint=dict(interval=1, max_keep_ckpts=1, out_dir=mount))
        with mock.patch.object(LocalBackend, 'put', fill_then_put), \
                self.assertRaises(OSError) as ctx:
            runner.train()
        err = str(ctx.exception)
        self.assertEqual(type(ctx.exception).__name__,
                         'CheckpointSpaceError')
        self.assertEqual(ctx.exception.__cause__.errno, errno.ENOSPC)
        self.assertIn(f'Cannot save epoch_2.pth in {out_dir}', err)
        self.assertIn(osp.join(out_dir, 'epoch_1.pth'), err)
        self._check_intact(out_dir)
        self.assertEqual(shutil.disk_usage(mount).free, free_before[0])
