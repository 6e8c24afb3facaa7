"""RNGStateHook: resume restores every generator of every rank, from
checkpoints whose tensors were mapped off the CPU."""
import io
import random
from unittest import TestCase, mock

import numpy as np
import torch

from mmdet_sparse.engine import hooks
from mmdet_sparse.engine.hooks import RNGStateHook


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
        states = []
        for seed in (0, 1):
            random.seed(seed)
            np.random.seed(seed)
            torch.manual_seed(seed)
            states.append(hooks.capture_rng())
            states[-1]['draws'] = _draws()
        with mock.patch.object(hooks, 'all_gather_object',
                               return_value=states):
            checkpoint = self._saved()
        self.assertEqual(len(checkpoint['rng_state']['ranks']), 2)
        for rank in (1, 0):
            with mock.patch.object(hooks, 'get_rank', return_value=rank), \
                    mock.patch.object(hooks, 'get_world_size',
                                      return_value=2):
                self.hook.after_load_checkpoint(None,
                                                _to_device(checkpoint))
            self.assertEqual(_draws(), states[rank]['draws'])

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
