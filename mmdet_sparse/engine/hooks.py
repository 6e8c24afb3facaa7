"""Hooks of ``mmdet_sparse``."""
import random

import numpy as np
import torch
from mmengine.hooks import Hook

from mmdet_sparse.registry import HOOKS


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Save the random generators with each checkpoint and restore them on
    resume, so a resumed run draws the same augmentations as one that never
    stopped (mmengine re-seeds, but does not restore, the generators).

    Only plain types and tensors are stored (the NumPy state as a tensor),
    so the checkpoint stays loadable with ``torch.load(weights_only=True)``.
    Data-loader workers seed themselves from the run's seed and are not
    affected.
    """

    priority = 'VERY_LOW'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        checkpoint['rng_state'] = dict(
            python=random.getstate(),
            numpy=(kind, torch.from_numpy(keys.astype(np.int64)), int(pos),
                   int(has_gauss), float(gauss)),
            torch=torch.get_rng_state())

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get('rng_state')
        if state is None:
            return
        version, internal, gauss = state['python']
        random.setstate((version, tuple(internal), gauss))
        kind, keys, pos, has_gauss, gauss = state['numpy']
        np.random.set_state(
            (kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
        torch.set_rng_state(state['torch'])
