"""RNGStateHook: resume restores every generator of every rank, from
checkpoints whose tensors were mapped off the CPU."""
import io
import json
import os.path as osp
import random
import tempfile
from unittest import TestCase, mock

import numpy as np
import torch

from mmdet_sparse.engine import hooks
from mmdet_sparse.engine.hooks import RNGStateHook
from support.tool_runs import run_two_ranks

# One rank of a 2-process gloo run: train one epoch after rank-dependent
# draws (so the ranks' states differ), save, then resume in a new Runner;
# each rank records its draws after the save and after the resume.
DIST_WORKER = r'''
import json, os.path as osp, sys
import torch, torch.distributed as dist
from support.toy_runner import toy_runner

tmp = sys.argv[1]
dist.init_process_group('gloo')
rank = dist.get_rank()
runner = toy_runner(osp.join(tmp, 'run'), max_epochs=1)
torch.rand(rank + 1)
runner.train()
after_save = torch.rand(3).tolist()
resumed = toy_runner(osp.join(tmp, 'resumed'), max_epochs=1, resume=True,
                     load_from=osp.join(tmp, 'run', 'epoch_1.pth'))
resumed.train()
with open(osp.join(tmp, f'rank{rank}.json'), 'w') as f:
    json.dump(dict(after_save=after_save, resumed=torch.rand(3).tolist()), f)
dist.destroy_process_group()
'''


class OnDevice(torch.Tensor):
    """Stand-in for a tensor that ``Runner.resume`` mapped onto a GPU: it
    refuses ``.numpy()`` and generator states until copied with
    ``.cpu()``."""

    def numpy(self, *args, **kwargs):
        raise TypeError("can't convert cuda:0 device type tensor to numpy. "
                        'Use Tensor.cpu() to copy the tensor to host memory '
                        'first.')

    def cpu(self, *args, **kwargs):
        return self.as_subclass(torch.Tensor).clone()


def _to_device(value):
    """The checkpoint with every tensor as an :class:`OnDevice`."""
    if isinstance(value, torch.Tensor):
        return value.as_subclass(OnDevice)
    if isinstance(value, (list, tuple)):
        return type(value)(_to_device(v) for v in value)
    if isinstance(value, dict):
        return {k: _to_device(v) for k, v in value.items()}
    return value


def _host_only(setter):
    """``setter`` refusing device tensors, as a generator's ``set_state``
    refuses CUDA tensors (``RNG state must be a torch.ByteTensor``)."""

    def set_state(state, *args, **kwargs):
        if type(state) is not torch.Tensor:
            raise TypeError('RNG state must be a torch.ByteTensor')
        return setter(state, *args, **kwargs)

    return set_state


def _draws():
    return (random.random(), float(np.random.rand()),
            torch.rand(3).tolist())


class TestRNGStateHook(TestCase):

    def setUp(self):
        self.hook = RNGStateHook()
        patcher = mock.patch.object(torch, 'set_rng_state',
                                    _host_only(torch.set_rng_state))
        patcher.start()
        self.addCleanup(patcher.stop)

    def _saved(self):
        checkpoint = {}
        self.hook.before_save_checkpoint(None, checkpoint)
        return checkpoint

    def test_resume_from_tensors_mapped_to_the_gpu(self):
        checkpoint = self._saved()
        expected = _draws()
        _draws()  # the run goes on, then is resumed from the checkpoint
        self.hook.after_load_checkpoint(None, _to_device(checkpoint))
        self.assertEqual(_draws(), expected)

    def test_loads_with_weights_only(self):
        checkpoint = self._saved()
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        buffer.seek(0)
        loaded = torch.load(buffer, weights_only=True)
        expected = _draws()
        self.hook.after_load_checkpoint(None, loaded)
        self.assertEqual(_draws(), expected)

    def test_saves_and_restores_the_cuda_generator(self):
        state = torch.arange(16, dtype=torch.uint8)
        restored = []
        with mock.patch.object(torch.cuda, 'is_available',
                               return_value=True), \
                mock.patch.object(torch.cuda, 'is_initialized',
                                  return_value=True), \
                mock.patch.object(torch.cuda, 'get_rng_state',
                                  return_value=state), \
                mock.patch.object(torch.cuda, 'set_rng_state',
                                  _host_only(restored.append)):
            checkpoint = self._saved()
            self.assertTrue(torch.equal(
                checkpoint['rng_state']['ranks'][0]['cuda'], state))
            self.hook.after_load_checkpoint(None, _to_device(checkpoint))
        self.assertEqual(len(restored), 1)
        self.assertTrue(torch.equal(restored[0], state))

    def test_each_rank_restores_its_own_state(self):
        """Gathered when a checkpoint is due (every rank takes part), then
        written by rank 0; each rank restores its own entry."""
        states = []
        for seed in (0, 1):
            random.seed(seed)
            np.random.seed(seed)
            torch.manual_seed(seed)
            states.append(hooks.capture_rng())
            states[-1]['draws'] = _draws()
        runner = mock.Mock(iter=5)
        with mock.patch.object(hooks, 'all_gather_object',
                               return_value=states) as gather, \
                mock.patch.object(hooks, 'get_world_size', return_value=2):
            with mock.patch.object(hooks, 'checkpoint_due',
                                   return_value=False):
                self.hook.after_train_iter(runner, 0)
            gather.assert_not_called()  # no checkpoint: no collective
            with mock.patch.object(hooks, 'checkpoint_due',
                                   return_value=True):
                self.hook.after_train_iter(runner, 0)
            gather.assert_called_once()
            checkpoint = {}
            self.hook.before_save_checkpoint(runner, checkpoint)
        expected = _draws()  # rank 0's own state at the save
        ranks = checkpoint['rng_state']['ranks']
        self.assertEqual(len(ranks), 2)
        for rank, draws in ((1, states[1]['draws']), (0, expected)):
            with mock.patch.object(hooks, 'get_rank', return_value=rank), \
                    mock.patch.object(hooks, 'get_world_size',
                                      return_value=2):
                self.hook.after_load_checkpoint(None,
                                                _to_device(checkpoint))
            self.assertEqual(_draws(), draws)

    def test_unannounced_save_holds_rank_0_only(self):
        runner = mock.Mock(iter=3)
        with mock.patch.object(hooks, 'get_world_size', return_value=2), \
                mock.patch.object(hooks, 'all_gather_object') as gather, \
                mock.patch.object(hooks, 'print_log') as log:
            checkpoint = {}
            self.hook.before_save_checkpoint(runner, checkpoint)
        gather.assert_not_called()  # rank 0 alone: a collective would hang
        self.assertEqual(len(checkpoint['rng_state']['ranks']), 1)
        self.assertIn("rank 0's random states only", log.call_args.args[0])

    def test_checkpoint_due_follows_the_checkpoint_hook(self):
        from mmengine.hooks import CheckpointHook
        by_iter = CheckpointHook(interval=3, by_epoch=False, save_last=False)
        by_epoch = CheckpointHook(interval=2, by_epoch=True)
        runner = mock.Mock(iter=5, epoch=1, hooks=[by_iter],
                           max_iters=100, max_epochs=10)
        self.assertTrue(hooks.checkpoint_due(runner, 'iter'))  # 6th iter
        self.assertFalse(hooks.checkpoint_due(runner, 'epoch'))
        runner.iter = 6
        self.assertFalse(hooks.checkpoint_due(runner, 'iter'))
        runner.hooks = [by_epoch]
        self.assertTrue(hooks.checkpoint_due(runner, 'epoch'))  # 2nd epoch
        self.assertFalse(hooks.checkpoint_due(runner, 'iter'))
        runner.epoch = 2
        self.assertFalse(hooks.checkpoint_due(runner, 'epoch'))
        runner.epoch = 9  # the last epoch: save_last
        self.assertTrue(hooks.checkpoint_due(runner, 'epoch'))

    def test_other_world_size_warns_and_keeps_extra_ranks_seeded(self):
        checkpoint = self._saved()  # one process
        torch.manual_seed(7)
        seeded = torch.get_rng_state()
        with mock.patch.object(hooks, 'get_rank', return_value=1), \
                mock.patch.object(hooks, 'get_world_size', return_value=2):
            self.hook.after_load_checkpoint(None, checkpoint)
        self.assertTrue(torch.equal(torch.get_rng_state(), seeded))
        with mock.patch.object(hooks, 'get_world_size', return_value=2), \
                mock.patch.object(hooks, 'print_log') as log:
            self.hook.after_load_checkpoint(None, checkpoint)
        self.assertIn('1 process(es), this run has 2',
                      log.call_args.args[0])

    def test_checkpoint_of_the_earlier_format(self):
        state = hooks.capture_rng()
        state.pop('cuda')
        expected = _draws()
        self.hook.after_load_checkpoint(None, dict(rng_state=state))
        self.assertEqual(_draws(), expected)

    def test_checkpoint_without_state(self):
        before = torch.get_rng_state()
        self.hook.after_load_checkpoint(None, {})
        self.assertTrue(torch.equal(torch.get_rng_state(), before))


class TestRNGStateHookDistributed(TestCase):

    def test_two_processes_save_and_resume_their_own_states(self):
        """mmengine saves on rank 0 only: the hook must not wait there in a
        collective (it used to hang), and each rank resumes its own
        draws."""
        with tempfile.TemporaryDirectory() as tmp:
            script = osp.join(tmp, 'worker.py')
            with open(script, 'w') as f:
                f.write(DIST_WORKER)
            outputs = run_two_ranks(script, [tmp])
            results = []
            for rank, output in enumerate(outputs):
                path = osp.join(tmp, f'rank{rank}.json')
                self.assertTrue(osp.exists(path), msg=output[-3000:])
                with open(path) as f:
                    results.append(json.load(f))
            checkpoint = torch.load(osp.join(tmp, 'run', 'epoch_1.pth'),
                                    weights_only=True)
        ranks = checkpoint['rng_state']['ranks']
        self.assertEqual(len(ranks), 2)
        self.assertFalse(torch.equal(ranks[0]['torch'], ranks[1]['torch']))
        self.assertNotEqual(results[0]['after_save'],
                            results[1]['after_save'])
        for result in results:
            self.assertEqual(result['resumed'], result['after_save'])
