"""An epoch-based training loop that resumes in the middle of an epoch.

mmengine's ``EpochBasedTrainLoop`` restarts the current epoch from its first
batch when resumed from an iteration checkpoint (``CheckpointHook`` with
``by_epoch=False``): the batches trained before the checkpoint are trained
again, and the run does more iterations than its schedule.
:class:`ResumableEpochBasedTrainLoop` continues at the next batch instead,
with the same data order and random streams as a run that never stopped.
"""
import itertools
from typing import Iterator, Optional, Sequence, Tuple

import torch
from mmengine.logging import print_log
from mmengine.runner import EpochBasedTrainLoop
from torch.utils.data import DataLoader, IterableDataset, Sampler

from mmdet_sparse.registry import LOOPS
from .hooks import capture_rng, restore_rng

# Message-hub key (saved with every checkpoint): batches of the current
# epoch trained so far; 0 once the epoch's iterations are done.
POSITION_KEY = 'train_batches_done_in_epoch'


class SkipFirst(Sampler):
    """A (batch) sampler without the first ``skip`` items of ``sampler``.

    Only indices are skipped: the dataset never loads the skipped samples.
    Epoch seeding (``set_epoch``) still goes to the wrapped sampler, which
    the original data loader keeps.

    Args:
        sampler: A sampler or batch sampler.
        skip: How many of its items to drop.
    """

    def __init__(self, sampler: Sampler, skip: int) -> None:
        self.sampler = sampler
        self.skip = skip

    def __iter__(self) -> Iterator:
        return itertools.islice(iter(self.sampler), self.skip, None)

    def __len__(self) -> int:
        return max(len(self.sampler) - self.skip, 0)


@LOOPS.register_module()
class ResumableEpochBasedTrainLoop(EpochBasedTrainLoop):
    """``EpochBasedTrainLoop`` (same arguments) that, resumed from a
    checkpoint saved in the middle of an epoch, continues at the next batch.

    Each iteration records in the message hub how many batches of the epoch
    are done (:data:`POSITION_KEY`), so every checkpoint carries it. On
    resume, the interrupted epoch starts with the same ``before_train_epoch``
    hooks (which seed the sampler by epoch), then its remaining batches come
    from a one-epoch data loader over the same dataset and batch sampler
    whose first batches are skipped as indices, without loading their
    images. The batch indices passed to hooks are those of the full epoch.
    The random generators are reset to their state at the checkpoint (as
    restored by ``RNGStateHook``) right before the first remaining batch, as
    in an uninterrupted run. With ``num_workers > 0`` the workers of that
    epoch start fresh, so their random augmentations of the remaining
    batches differ from an uninterrupted run's; the data order does not.

    Checkpoints without the key (written by mmengine's loop) are resumed at
    batch ``iter - epoch * len(dataloader)`` when that lies in the epoch,
    else at the epoch's first batch, with a warning.
    """

    _resume_at = 0
    _resume_rng: Optional[dict] = None

    def run(self) -> torch.nn.Module:
        """Train, continuing inside the current epoch after a resume."""
        self._resume_at = self._batches_done()
        self._resume_rng = (
            capture_rng() if self._resume_at else None)
        if self._resume_at:
            print_log(
                f'Resuming epoch {self._epoch + 1} after batch '
                f'{self._resume_at} of {len(self.dataloader)} (iteration '
                f'{self._iter}).', logger='current')
        return super().run()

    def run_epoch(self) -> None:
        """Iterate over the (rest of the) epoch."""
        skip, self._resume_at = self._resume_at, 0
        self.runner.call_hook('before_train_epoch')
        self.runner.model.train()
        for idx, data_batch in self._batches(skip):
            self.run_iter(idx, data_batch)
        self.runner.message_hub.update_info(POSITION_KEY, 0)
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1

    def run_iter(self, idx: int, data_batch: Sequence[dict]) -> None:
        """One iteration on batch ``idx`` of the epoch."""
        self.runner.message_hub.update_info(POSITION_KEY, idx + 1)
        super().run_iter(idx, data_batch)

    def _batches(self, skip: int) -> Iterator[Tuple[int, Sequence[dict]]]:
        """``(index in the epoch, batch)`` from batch ``skip`` on."""
        if not skip:
            return enumerate(self.dataloader)
        if skip >= len(self.dataloader):
            batches = iter(())
        elif isinstance(self.dataloader.dataset, IterableDataset):
            print_log(
                f'The training dataset is iterable: loading and dropping '
                f'the {skip} batches trained before the checkpoint.',
                logger='current', level='WARNING')
            batches = iter(self.dataloader)
            for _ in range(skip):
                next(batches)
        else:
            batches = iter(self._loader_without_first(skip))
        # Creating the iterator drew a seed from torch's generator; the
        # first remaining batch sees the generators as at the checkpoint.
        restore_rng(self._resume_rng)
        self._resume_rng = None
        return enumerate(batches, start=skip)

    def _loader_without_first(self, skip: int) -> DataLoader:
        """A data loader like ``self.dataloader`` whose (batch) sampler
        drops its first ``skip`` batches."""
        loader = self.dataloader
        kwargs = dict(
            num_workers=loader.num_workers,
            collate_fn=loader.collate_fn,
            pin_memory=loader.pin_memory,
            timeout=loader.timeout,
            worker_init_fn=loader.worker_init_fn,
            multiprocessing_context=loader.multiprocessing_context,
            generator=loader.generator,
            pin_memory_device=loader.pin_memory_device)
        if loader.num_workers > 0:
            kwargs['prefetch_factor'] = loader.prefetch_factor
        if hasattr(loader, 'in_order'):
            kwargs['in_order'] = loader.in_order
        if loader.batch_sampler is not None:
            return DataLoader(
                loader.dataset,
                batch_sampler=SkipFirst(loader.batch_sampler, skip),
                **kwargs)
        return DataLoader(
            loader.dataset,
            sampler=SkipFirst(loader.sampler, skip),
            batch_size=None,
            **kwargs)

    def _batches_done(self) -> int:
        """Batches of the current epoch trained before the resumed
        checkpoint (0 for a new run or an epoch checkpoint)."""
        if self._iter == 0:
            return 0
        num_batches = len(self.dataloader)
        done = self.runner.message_hub.get_info(POSITION_KEY)
        if done is None:
            done = self._iter - self._epoch * num_batches
            if not 0 <= done <= num_batches:
                print_log(
                    f'The checkpoint (iteration {self._iter}, epoch '
                    f'{self._epoch}) does not say how many batches of the '
                    f'epoch were trained, and {num_batches} batches per '
                    'epoch do not tell: the epoch restarts at its first '
                    'batch.', logger='current', level='WARNING')
                return 0
        if done > num_batches:
            raise ValueError(
                f'The resumed checkpoint was saved after batch {done} of '
                f'epoch {self._epoch + 1}, but the training data loader has '
                f'only {num_batches} batches per epoch: resume with the '
                'dataset and batch size of the run that saved it.')
        return done
