"""Hooks of ``mmdet_sparse``."""
import random
from typing import List, Optional

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.hooks import Hook
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


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Save the random generators with each checkpoint and restore them on
    resume, so a resumed run draws the same augmentations and DropPath
    masks as one that never stopped (mmengine re-seeds, but does not
    restore, the generators).

    Every process's states are saved (gathered to the process that writes
    the checkpoint): Python's, NumPy's, PyTorch's CPU generator and the
    current CUDA device's. On resume each process restores its own rank's
    entry; a run resumed with another number of processes restores the
    ranks both runs have and warns. Checkpoints of the earlier format (one
    state, no ``ranks``) restore rank 0 only.

    Only plain types and tensors are stored (the NumPy state as a tensor),
    so the checkpoint stays loadable with ``torch.load(weights_only=True)``.
    Data-loader workers seed themselves from the run's seed and are not
    affected.
    """

    priority = 'VERY_LOW'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Gather every rank's states into ``checkpoint['rng_state']``.

        Called on every rank (a collective in distributed runs)."""
        states = all_gather_object(capture_rng())
        checkpoint['rng_state'] = dict(ranks=list(states))

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
                logger='current', level='WARNING')
        mine: Optional[dict] = ranks[rank] if rank < len(ranks) else None
        if mine is not None:
            restore_rng(mine)
