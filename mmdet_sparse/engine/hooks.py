"""Hooks of ``mmdet_sparse``."""
import logging
import random
from typing import List, Optional, Tuple

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log
from torch import Tensor

from mmdet_sparse.registry import HOOKS


def _cpu(tensor: Tensor) -> Tensor:
    """``tensor`` on the CPU: a resumed checkpoint's tensors may have been
    mapped onto the model's device (``Runner.resume`` maps to the current
    GPU), where ``.numpy()`` and the generators' ``set_state`` refuse
    them."""
    return tensor.cpu() if isinstance(tensor, Tensor) else torch.as_tensor(
        tensor)


def capture_rng() -> dict:
    """This process's generator states as plain types and CPU tensors
    (loadable with ``torch.load(weights_only=True)``).

    Returns:
        dict: ``python`` (``random.getstate()``), ``numpy`` (the legacy
        global state, keys as an int64 tensor), ``torch`` (CPU generator)
        and ``cuda`` (the current CUDA device's generator, ``None`` without
        CUDA).
    """
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    cuda = None
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        cuda = torch.cuda.get_rng_state()
    return dict(
        python=random.getstate(),
        numpy=(kind, torch.from_numpy(keys.astype(np.int64)), int(pos),
               int(has_gauss), float(gauss)),
        torch=torch.get_rng_state(),
        cuda=cuda)


def restore_rng(state: dict) -> None:
    """Set the generators to a state of :func:`capture_rng`, from CPU
    copies of its tensors, wherever they were loaded to.

    A ``cuda`` state is restored only where CUDA is available (a CPU run
    resumed from a GPU run keeps its CPU-only draws).
    """
    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, gauss = state['numpy']
    np.random.set_state(
        (kind, _cpu(keys).numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(_cpu(state['torch']))
    if state.get('cuda') is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(_cpu(state['cuda']))


def checkpoint_due(runner, at: str) -> bool:
    """Whether one of the runner's ``CheckpointHook`` s saves a regular
    checkpoint in this ``after_train_iter`` (``at='iter'``) or
    ``after_train_epoch`` (``at='epoch'``) call, by its own rule."""
    for hook in runner.hooks:
        if not isinstance(hook, CheckpointHook) or \
                hook.by_epoch != (at == 'epoch'):
            continue
        if at == 'iter':
            due = hook.every_n_train_iters(runner, hook.interval,
                                           hook.save_begin) or (
                hook.save_last and hook.is_last_train_iter(runner))
        else:
            due = hook.every_n_epochs(runner, hook.interval,
                                      hook.save_begin) or (
                hook.save_last and hook.is_last_train_epoch(runner))
        if due:
            return True
    return False


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Save the random generators with each checkpoint and restore them on
    resume, so a resumed run draws the same augmentations and DropPath
    masks as one that never stopped (mmengine re-seeds, but does not
    restore, the generators).

    Every process's states are saved: Python's, NumPy's, PyTorch's CPU
    generator and the current CUDA device's. mmengine writes checkpoints
    on rank 0 alone (``Runner.save_checkpoint`` runs there only), so in a
    distributed run the states are gathered earlier, in the
    ``after_train_iter`` / ``after_train_epoch`` call in which a
    ``CheckpointHook`` will save (this hook runs before it: priority
    ``LOW``), on every rank. A checkpoint saved at another moment (a
    ``save_best`` file, a direct ``runner.save_checkpoint``) holds rank 0's
    states only. On resume each process restores its own rank's entry; a
    run resumed with another number of processes restores the ranks both
    runs have and warns. Checkpoints of the earlier format (one state, no
    ``ranks``) restore rank 0 only.

    Only plain types and tensors are stored (the NumPy state as a tensor),
    so the checkpoint stays loadable with ``torch.load(weights_only=True)``.
    Data-loader workers seed themselves from the run's seed and are not
    affected.
    """

    priority = 'LOW'

    def __init__(self) -> None:
        # (iteration, states of every rank) gathered for the next save.
        self._gathered: Optional[Tuple[int, List[dict]]] = None

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        """Gather every rank's states when a checkpoint follows."""
        if get_world_size() > 1 and checkpoint_due(runner, 'iter'):
            self._gather(runner)

    def after_train_epoch(self, runner) -> None:
        """Gather every rank's states when a checkpoint follows."""
        if get_world_size() > 1 and checkpoint_due(runner, 'epoch'):
            self._gather(runner)

    def _gather(self, runner) -> None:
        """A collective: every rank calls it at the same moment."""
        self._gathered = (runner.iter, all_gather_object(capture_rng()))

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Write the states into ``checkpoint['rng_state']`` (rank 0)."""
        ranks = [capture_rng()]
        gathered, self._gathered = self._gathered, None
        if gathered is not None and gathered[0] == runner.iter:
            ranks += gathered[1][1:]
        elif get_world_size() > 1:
            print_log(
                'RNGStateHook: this checkpoint was not announced by a '
                "CheckpointHook's schedule; it holds rank 0's random "
                'states only.', logger='current', level=logging.WARNING)
        checkpoint['rng_state'] = dict(ranks=ranks)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Restore this rank's states, if the checkpoint has them."""
        state = checkpoint.get('rng_state')
        if state is None:
            return
        ranks: List[dict] = state['ranks'] if 'ranks' in state else [state]
        rank, world_size = get_rank(), get_world_size()
        if len(ranks) != world_size and rank == 0:
            print_log(
                f'RNGStateHook: the checkpoint holds the random states of '
                f'{len(ranks)} process(es), this run has {world_size}; '
                f'ranks {len(ranks)} and above keep their seeded states, '
                'so their random draws differ from an uninterrupted run.',
                logger='current', level=logging.WARNING)
        mine: Optional[dict] = ranks[rank] if rank < len(ranks) else None
        if mine is not None:
            restore_rng(mine)
