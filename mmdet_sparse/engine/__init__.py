"""Training-loop support of ``mmdet_sparse``: CPU mixed precision and
distribution, loading Runner checkpoints under ``weights_only``, crash-safe
checkpoint saving and resuming in the middle of an epoch."""
from .checkpoint import allow_runner_checkpoints, runner_checkpoint_globals
from .checkpoint_hook import AtomicCheckpointHook
from .data_check import DataCheckHook, check_classes
from .hooks import RNGStateHook
from .loops import ResumableEpochBasedTrainLoop
from .proposal_init import DatasetProposalInitHook  # noqa: F401
from .cpu_support import (CPUBFloat16OptimWrapper, amp_for_device,
                          enable_amp, setup_cpu_distributed)

__all__ = [
    'allow_runner_checkpoints', 'runner_checkpoint_globals',
    'CPUBFloat16OptimWrapper', 'amp_for_device', 'enable_amp',
    'setup_cpu_distributed', 'RNGStateHook', 'DataCheckHook', 'check_classes',
    'AtomicCheckpointHook',
    'ResumableEpochBasedTrainLoop'
]
