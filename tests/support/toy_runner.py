"""A tiny mmengine Runner (linear model, 2-d points) for fast in-process
tests of the training engine: checkpoint hook and training loop."""
import uuid
from typing import Dict, List, Optional

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmengine.structures import BaseDataElement
from torch.utils.data import Dataset

import mmdet_sparse  # noqa: F401 (registers the hook, loop and scope)
from mmdet_sparse.registry import DATASETS, HOOKS, METRICS, MODELS


@DATASETS.register_module()
class ToyPoints(Dataset):
    """``num`` random 2-d points with targets; each item is jittered with
    NumPy's global generator (a random augmentation). ``loaded`` counts
    the items loaded in this process.

    Args:
        num: Number of items.
    """

    loaded: List[int] = []

    def __init__(self, num: int = 10) -> None:
        gen = torch.Generator().manual_seed(0)
        self.x = torch.randn(num, 2, generator=gen)
        self.y = self.x @ torch.tensor([[2.0], [-1.0]]) + 0.5

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, idx: int) -> dict:
        ToyPoints.loaded.append(idx)
        jitter = torch.from_numpy(np.random.normal(0, 0.1, 2)).float()
        return dict(inputs=self.x[idx] + jitter,
                    data_samples=BaseDataElement(metainfo=dict(idx=idx),
                                                 y=self.y[idx]))


@MODELS.register_module()
class ToyLinear(BaseModel):
    """``y = Wx + b`` with a squared loss, ``(B, 2) -> (B, 1)``."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(2, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        x = torch.stack(inputs)
        out = self.linear(x)
        if mode == 'tensor':
            return out
        y = torch.stack([s.y for s in data_samples])
        if mode == 'loss':
            return dict(loss=((out - y)**2).mean())
        return [dict(pred=p, y=t) for p, t in zip(out, y)]


@METRICS.register_module()
class ToyScore(BaseMetric):
    """Reports ``acc`` from a fixed list, one value per evaluation, so a
    test chooses when the best checkpoint changes.

    Args:
        scores: The value of each evaluation, in order.
    """

    def __init__(self, scores: List[float]) -> None:
        super().__init__()
        self.scores = list(scores)
        self.calls = 0

    def process(self, data_batch, data_samples) -> None:
        self.results.append(0)

    def compute_metrics(self, results) -> Dict[str, float]:
        self.calls += 1
        return dict(acc=self.scores[self.calls - 1])


@HOOKS.register_module()
class ToyRecorder(Hook):
    """Records ``(iter, epoch, batch_idx, item ids, loss)`` of each
    iteration and the epoch of each ``after_train_epoch``."""

    priority = 'LOWEST'

    def __init__(self) -> None:
        self.iters: List[tuple] = []
        self.epochs_ended: List[int] = []

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        ids = tuple(s.idx for s in data_batch['data_samples'])
        self.iters.append((runner.iter + 1, runner.epoch, batch_idx, ids,
                           outputs['loss'].item()))

    def after_train_epoch(self, runner) -> None:
        self.epochs_ended.append(runner.epoch)


def toy_runner(work_dir: str,
               checkpoint: Optional[dict] = None,
               max_epochs: int = 2,
               num: int = 10,
               resume: bool = False,
               load_from: Optional[str] = None,
               val_scores: Optional[List[float]] = None,
               loop: str = 'ResumableEpochBasedTrainLoop') -> Runner:
    """A Runner of :class:`ToyLinear` on :class:`ToyPoints` (batches of 2,
    shuffled), SGD with the lr divided by 10 after the first epoch,
    ``RNGStateHook`` and a :class:`ToyRecorder` (``runner.recorder``).

    Args:
        work_dir: The work dir.
        checkpoint: The ``AtomicCheckpointHook`` arguments.
        max_epochs: Epochs to train.
        num: Dataset size.
        resume: Resume (from ``load_from``, or from ``last_checkpoint``).
        load_from: Checkpoint to resume from.
        val_scores: Validate after every epoch with :class:`ToyScore`.
        loop: Type of the training loop.
    """
    loader = dict(dataset=dict(type='ToyPoints', num=num),
                  sampler=dict(type='DefaultSampler', shuffle=True),
                  batch_size=2, num_workers=0)
    recorder = ToyRecorder()
    val = {}
    if val_scores is not None:
        val = dict(val_dataloader=dict(loader, sampler=dict(
                       type='DefaultSampler', shuffle=False)),
                   val_cfg=dict(type='ValLoop'),
                   val_evaluator=dict(type='ToyScore', scores=val_scores))
    runner = Runner(
        model=dict(type='ToyLinear'),
        work_dir=work_dir,
        experiment_name=f'toy_{uuid.uuid4().hex}',
        train_dataloader=loader,
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        param_scheduler=dict(type='MultiStepLR', milestones=[1],
                             by_epoch=True),
        train_cfg=dict(type=loop, max_epochs=max_epochs, val_interval=1),
        default_hooks=dict(
            checkpoint=dict(type='AtomicCheckpointHook',
                            **(checkpoint or dict(interval=1)))),
        custom_hooks=[dict(type='RNGStateHook'), recorder],
        randomness=dict(seed=0),
        default_scope='mmdet_sparse',
        resume=resume,
        load_from=load_from,
        log_level='WARNING',
        **val)
    runner.recorder = recorder
    return runner
