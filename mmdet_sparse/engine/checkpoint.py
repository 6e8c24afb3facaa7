"""Loading the checkpoints that mmengine's Runner writes with PyTorch >= 2.6.

``torch.load`` defaults to ``weights_only=True`` since PyTorch 2.6, and
mmengine loads checkpoints without overriding it. A Runner checkpoint holds,
besides tensors, the message hub's ``HistoryBuffer`` objects (their
statistics methods pickled through ``getattr``) and NumPy arrays and scalars,
so resuming, testing and inference fail with "Weights only load failed".
:func:`allow_runner_checkpoints` adds exactly those globals to PyTorch's
allow-list; everything else stays refused. Only load checkpoints you trust.
"""
import builtins
from typing import Any, List


def runner_checkpoint_globals() -> List[Any]:
    """The non-tensor globals found in a checkpoint written by the Runner."""
    import numpy as np
    from mmengine.logging import HistoryBuffer

    reconstruct = np.ndarray(0).__reduce__()[0]  # multiarray._reconstruct
    scalar = np.float64(0).__reduce__()[0]  # multiarray.scalar
    dtype_classes = {type(np.dtype(code)) for code in '?bhilqBHILQefdgFDGSUV'}
    return [HistoryBuffer, builtins.getattr, np.ndarray, np.dtype,
            reconstruct, scalar, *sorted(dtype_classes, key=str)]


def allow_runner_checkpoints() -> None:
    """Let ``torch.load(weights_only=True)`` read Runner checkpoints.

    Does nothing on PyTorch versions without ``add_safe_globals`` (< 2.4),
    which load such checkpoints unrestricted anyway.
    """
    import torch
    add_safe_globals = getattr(torch.serialization, 'add_safe_globals', None)
    if add_safe_globals is not None:
        add_safe_globals(runner_checkpoint_globals())
