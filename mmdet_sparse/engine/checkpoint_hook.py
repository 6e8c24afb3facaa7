"""A checkpoint hook that never leaves the work dir without a complete,
resumable checkpoint.

mmengine's ``CheckpointHook`` deletes the oldest checkpoint before writing
the new one and writes files in place, so a process killed while saving can
leave a truncated checkpoint and a ``last_checkpoint`` naming a deleted
file. :class:`AtomicCheckpointHook` takes the same arguments and saves the
same files, in this order:

1. the checkpoint is written to a hidden temporary file in the same folder
   (``.<name>.incomplete``), flushed to disk and renamed over ``<name>``
   (``os.replace`` is atomic on POSIX file systems);
2. ``last_checkpoint`` is replaced the same way;
3. only then are outdated files (beyond ``max_keep_ckpts``, a previous
   ``save_best`` file) deleted.

The paths still to be deleted are stored in the message hub of the
checkpoint written in step 1, so a run resumed from it deletes them if the
process was killed before step 3. Temporary files left by a killed process
are deleted when training starts; ``--resume`` only reads
``last_checkpoint`` and never sees them.

A full disk (or an exceeded quota) cannot break this either, and does not
leave the disk full: every write that fails deletes its temporary file
before the error goes on. Before a checkpoint is written, the free space of
its folder is compared with the size it will have (see
:meth:`AtomicCheckpointHook._expected_size`); as the files it replaces are
deleted only after it is complete, the folder needs room for one checkpoint
more than ``max_keep_ckpts``. Both a lack of room and a write that fails
with ``ENOSPC``/``EDQUOT`` raise :class:`CheckpointSpaceError`, whose
message names the folder, the space needed and free, the complete
checkpoint that is kept and what to do. The decision is rank 0's and is
broadcast, so every rank of a distributed run raises it.
"""
import contextlib
import errno
import hashlib
import io
import os
import os.path as osp
import pickle
import shutil
from collections import deque
from typing import Any, Callable, IO, List, Optional, Tuple

import torch
from mmengine.dist import broadcast_object_list, is_main_process, master_only
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log

from mmdet_sparse.registry import HOOKS

TEMP_SUFFIX = '.incomplete'
PENDING_KEY = 'ckpts_pending_removal'
# errno values of a full disk and of an exceeded disk quota.
DISK_FULL = tuple(
    getattr(errno, name) for name in ('ENOSPC', 'EDQUOT')
    if hasattr(errno, name))


class CheckpointSpaceError(OSError):
    """A checkpoint was not saved for lack of space in its folder.

    ``errno`` is ``ENOSPC`` (or ``EDQUOT`` when a write failed on an exceeded
    quota); the message names the folder, the space needed and free, the
    complete checkpoint that is kept and what to do.
    """

    def __str__(self) -> str:
        return self.strerror or super().__str__()


def format_size(size: float) -> str:
    """``size`` bytes as ``'512 B'``, ``'3.4 kB'``, ``'106.2 MB'`` or
    ``'1.5 GB'`` (powers of 1000)."""
    if abs(size) < 1000:
        return f'{size:.0f} B'
    for unit in ('kB', 'MB'):
        size /= 1000
        if abs(size) < 1000:
            return f'{size:.1f} {unit}'
    return f'{size / 1000:.1f} GB'


def free_space(folder: str) -> int:
    """Bytes that may still be written to ``folder``'s file system (that of
    its nearest existing parent if it does not exist yet). Quotas are not
    seen."""
    folder = osp.abspath(folder)
    while not osp.isdir(folder) and osp.dirname(folder) != folder:
        folder = osp.dirname(folder)
    return shutil.disk_usage(folder).free


def disk_full_errno(exc: BaseException) -> Optional[int]:
    """``ENOSPC`` or ``EDQUOT`` if ``exc`` or an exception it was raised
    from or while handling is an ``OSError`` with that errno, else None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in DISK_FULL:
            return exc.errno
        exc = exc.__cause__ or exc.__context__
    return None


def tensor_bytes(obj: Any, seen: Optional[set] = None) -> int:
    """Bytes of the tensors in nested dicts, lists and tuples, a tensor that
    appears several times (tied weights) counted once."""
    seen = set() if seen is None else seen
    if isinstance(obj, torch.Tensor):
        key = (str(obj.device), obj.data_ptr(), tuple(obj.shape))
        if key in seen:
            return 0
        seen.add(key)
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        obj = list(obj.values())
    if not isinstance(obj, (list, tuple)):
        return 0
    return sum(tensor_bytes(item, seen) for item in obj)


def discard(path: str) -> None:
    """Delete the partial file ``path`` if it exists. An error deleting it
    is ignored: it must not hide the error that left the file behind (the
    next run deletes it when training starts)."""
    with contextlib.suppress(OSError):
        os.remove(path)


def temp_path(path: str) -> str:
    """The hidden temporary file in ``path``'s folder that becomes
    ``path``."""
    folder, name = osp.split(path)
    return osp.join(folder, f'.{name}{TEMP_SUFFIX}')


def is_temp_name(name: str) -> bool:
    """Whether a file name is one of :func:`temp_path`'s."""
    return name.startswith('.') and name.endswith(TEMP_SUFFIX)


def fsync_dir(folder: str) -> None:
    """Flush a folder's entries (a rename in it) to disk."""
    fd = os.open(folder or '.', os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit(tmp: str, path: str) -> None:
    """Flush the complete file ``tmp`` to disk and rename it to ``path``."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(osp.dirname(path))


def write_atomically(path: str, write: Callable[[IO], None],
                     mode: str = 'wb') -> None:
    """Create or replace ``path`` so that it is either the old or the
    complete new file, whenever the process is killed.

    Args:
        path: The file to write.
        write: Writes the content to the open temporary file it is given.
        mode: ``'wb'`` or ``'w'``.

    If writing fails, the temporary file is deleted and the error raised.
    """
    tmp = temp_path(path)
    try:
        with open(tmp, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        discard(tmp)
        raise
    fsync_dir(osp.dirname(path))


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` (same arguments, same files) with
    crash-safe writing: a kill at any moment leaves ``last_checkpoint``
    naming a complete checkpoint that exists.

    See the module docstring for the order of writes and deletions. Only
    local folders are written this way; with another storage backend
    (``backend_args``) the hook warns and behaves like mmengine's.
    """

    # Set in before_train; until then (e.g. a validation-only run) the
    # hook behaves like mmengine's.
    _atomic = False

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # with the optimizer or not -> (size, path) of the last checkpoint
        # saved, the expected size of the next one.
        self._sizes: dict = {}

    def before_train(self, runner) -> None:
        super().before_train(runner)
        self._atomic = isinstance(
            getattr(self.file_backend, 'client', self.file_backend),
            LocalBackend)
        if not self._atomic:
            runner.logger.warning(
                f'AtomicCheckpointHook: {self.out_dir} is not a local '
                'folder; checkpoints are written in place, as by '
                "mmengine's CheckpointHook, and a kill while saving can "
                'lose them.')
            return
        if self.max_keep_ckpts > 0:
            # Unbounded: outdated ids are popped (and their files deleted)
            # only after the new checkpoint is complete.
            self.keep_ckpt_ids = deque(self.keep_ckpt_ids)
        if is_main_process():
            self._remove_temp_files(runner)
            self._remove_pending(runner)
        runner.message_hub.update_info(PENDING_KEY, [])

    # Writing ------------------------------------------------------------

    def _save_file(self, runner, filename: str, name_last: bool = False,
                   **kwargs) -> None:
        """``runner.save_checkpoint`` to a temporary file, then commit it
        as ``out_dir/filename`` and, with ``name_last``, point
        ``last_checkpoint`` at it.

        Called on every rank (``runner.save_checkpoint`` writes on rank 0
        only). Rank 0 checks the free space first and, if a write fails,
        deletes the temporary file; both outcomes are broadcast
        (:meth:`_agree`), so all ranks go on or all raise, and none is left
        waiting in a collective of the next iteration.
        """
        path = self.file_backend.join_path(self.out_dir, filename)
        tmp = temp_path(path)
        with_optimizer = bool(kwargs.get('save_optimizer'))

        def space_error(exc=None):
            return self._space_error(
                runner, path, *self._expected_size(runner, with_optimizer),
                exc)

        error = None
        if is_main_process():
            try:
                error = space_error()
            except Exception as exc:  # raised on all ranks by _agree
                error = exc
        self._agree(error)
        try:
            runner.save_checkpoint(
                self.out_dir,
                osp.relpath(tmp, self.out_dir),
                self.file_client_args,
                backend_args=self.backend_args,
                **kwargs)
            if is_main_process():
                commit(tmp, path)
                self._sizes[with_optimizer] = (osp.getsize(path), path)
                if name_last:
                    write_atomically(
                        osp.join(runner.work_dir, 'last_checkpoint'),
                        lambda f: f.write(path), mode='w')
        except BaseException as exc:
            if is_main_process():
                discard(tmp)
            if not isinstance(exc, Exception):
                raise
            error = exc
            with contextlib.suppress(Exception):  # else exc goes on as is
                error = space_error(exc) or exc
        self._agree(error)

    @staticmethod
    def _agree(error: Optional[BaseException]) -> None:
        """Raise on every rank if rank 0 has an ``error``: rank 0 raises
        it, the others a :class:`CheckpointSpaceError` with the same message
        (or a ``RuntimeError`` naming rank 0's error). Every rank must call
        this at the same point; with one process it is ``raise error``.
        """
        shared = [None]
        if isinstance(error, CheckpointSpaceError):
            shared = [(error.errno, '', str(error))]
        elif error is not None:
            shared = [(None, type(error).__name__, str(error))]
        broadcast_object_list(shared)  # does nothing unless distributed
        if error is not None:
            raise error
        if shared[0] is not None:
            code, kind, message = shared[0]
            if code is not None:
                raise CheckpointSpaceError(code, message)
            raise RuntimeError(
                f'Rank 0 failed to save a checkpoint: {kind}: {message}')

    def _expected_size(self, runner, with_optimizer: bool) -> Tuple[int, str]:
        """``(bytes, how they were found)`` of the next checkpoint: the size
        of the last one this hook saved of the same kind (with or without
        the optimizer); before that (the first save of a run, also after a
        resume), the bytes of the model's tensors, and of the optimizer
        state if it is saved: a lower bound, as the file holds them and
        some more."""
        if with_optimizer in self._sizes:
            size, path = self._sizes[with_optimizer]
            return size, f'the size of {osp.basename(path)}'
        seen: set = set()
        size = tensor_bytes(runner.model.state_dict(), seen)
        if not with_optimizer:
            return size, 'the size of the model weights'
        wrappers = getattr(runner.optim_wrapper, 'optim_wrappers',
                           {'': runner.optim_wrapper})
        for wrapper in wrappers.values():
            state = getattr(getattr(wrapper, 'optimizer', None), 'state', {})
            size += tensor_bytes(dict(state), seen)
        return size, 'the size of the model weights and optimizer state'

    def _space_error(self,
                     runner,
                     path: str,
                     needed: int,
                     how: str,
                     exc: Optional[BaseException] = None
                     ) -> Optional[CheckpointSpaceError]:
        """The error to raise because ``path`` (``needed`` bytes, found as
        ``how`` says) cannot be saved: without ``exc``, if its folder has
        less free space; with ``exc`` (a failed write), if that is a full
        disk or an exceeded quota. None otherwise.

        The message names the folder, the space needed and free, the
        complete checkpoint ``last_checkpoint`` names (it is kept) and what
        to do.
        """
        folder, name = osp.split(path)
        free = free_space(folder)
        code = errno.ENOSPC
        if exc is None and free >= needed:
            return None
        if exc is None:
            problem = 'not enough free space; nothing was written'
        else:
            code = disk_full_errno(exc)
            if code is None:
                return None
            problem = ('the disk is full' if code == errno.ENOSPC else
                       'the disk quota is exceeded'
                       ) + f' ({exc}); the partial file was deleted'
        last = osp.join(runner.work_dir, 'last_checkpoint')
        intact = None
        if osp.isfile(last):
            with open(last) as f:
                intact = f.read().strip()
        kept = (f'The last complete checkpoint, {intact} (named by {last}), '
                'is intact: --resume continues from it.'
                if intact and osp.exists(intact) else
                'No complete checkpoint has been saved yet.')
        short = (f'at least {format_size(needed - free)}'
                 if needed > free else 'space')
        error = CheckpointSpaceError(
            code,
            f'Cannot save {name} in {folder}: {problem}. It needs about '
            f'{format_size(needed)} ({how}); {format_size(free)} are free '
            'on the disk (a quota can allow less). '
            f'{kept} To go on, free {short} in {folder}, or save to '
            'another disk (work_dir, or the out_dir of '
            'default_hooks.checkpoint). Lowering max_keep_ckpts does not '
            'help: outdated checkpoints are deleted only after the new one '
            'is complete, so the folder needs room for one checkpoint more '
            'than max_keep_ckpts.')
        error.__cause__ = exc
        return error

    def _save_checkpoint_with_step(self, runner, step, meta,
                                   outdated: Optional[List[str]] = None):
        """Save ``filename_tmpl.format(step)``, point ``last_checkpoint`` at
        it, then delete the checkpoints it replaces.

        Args:
            runner: The Runner.
            step (int): Epoch or iteration number in the file name.
            meta (dict): The checkpoint's ``meta``.
            outdated: Further files to delete once this checkpoint is
                complete (a replaced ``save_best`` file).
        """
        if not self._atomic:
            return super()._save_checkpoint_with_step(runner, step, meta)
        pending = list(runner.message_hub.get_info(PENDING_KEY) or [])
        pending += outdated or []
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and
                                            self.keep_ckpt_ids[-1] == step):
            self.keep_ckpt_ids.append(step)
            while len(self.keep_ckpt_ids) > self.max_keep_ckpts:
                pending.append(self._ckpt_path(self.keep_ckpt_ids.popleft()))
            runner.message_hub.update_info('keep_ckpt_ids',
                                           list(self.keep_ckpt_ids))
        # Stored in this checkpoint: a run resumed from it deletes them.
        runner.message_hub.update_info(PENDING_KEY, pending)

        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir,
                                                     ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        self._save_file(
            runner,
            ckpt_filename,
            name_last=True,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            **self.args)
        if is_main_process():
            self._remove_pending(runner)
        runner.message_hub.update_info(PENDING_KEY, [])

    def _save_best_checkpoint(self, runner, metrics) -> None:
        """Save a ``best_<metric>_<name>`` file for each improved metric;
        the file it replaces is deleted after the new one and the regular
        checkpoint that records it are complete."""
        if not self.save_best:
            return
        if not self._atomic:
            return super()._save_best_checkpoint(runner, metrics)
        step = runner.epoch if self.by_epoch else runner.iter
        unit = 'epoch' if self.by_epoch else 'iter'
        ckpt_filename = self.filename_tmpl.format(step)
        meta = dict(epoch=runner.epoch, iter=runner.iter)
        if 'auto' in self.key_indicators:
            self._init_rule(self.rules, [list(metrics.keys())[0]])

        single = len(self.key_indicators) == 1
        replaced, improved = [], False
        for key, rule in zip(self.key_indicators, self.rules):
            score_key = 'best_score' if single else f'best_score_{key}'
            path_key = 'best_ckpt' if single else f'best_ckpt_{key}'
            best = runner.message_hub.get_info(score_key,
                                               self.init_value_map[rule])
            score = metrics[key]
            if score is None or not self.is_better_than[key](score, best):
                continue
            improved = True
            runner.message_hub.update_info(score_key, score)
            old = (self.best_ckpt_path
                   if single else self.best_ckpt_path_dict[key])
            name = f'best_{key}_{ckpt_filename}'.replace('/', '_')
            path = self.file_backend.join_path(self.out_dir, name)
            if single:
                self.best_ckpt_path = path
            else:
                self.best_ckpt_path_dict[key] = path
            runner.message_hub.update_info(path_key, path)
            self._save_file(
                runner,
                name,
                save_optimizer=False,
                save_param_scheduler=False,
                meta=meta,
                by_epoch=False)
            runner.logger.info(
                f'The best checkpoint with {score:0.4f} {key} at {step} '
                f'{unit} is saved to {name}.')
            if old and old != path:
                replaced.append(old)

        if improved and self.last_ckpt is not None:
            # The regular checkpoint records the new best paths and scores;
            # the replaced files go once it is complete.
            self._save_checkpoint_with_step(runner, step, meta, replaced)
        elif replaced and is_main_process():
            # No regular checkpoint in this process yet: the new best file
            # is complete, delete the old one now (as mmengine does).
            for path in replaced:
                self._remove(runner, path)

    @master_only
    def _publish_model(self, runner, ckpt_path: str) -> None:
        """Write ``ckpt_path`` without the keys not in ``published_keys``
        to ``<name>-<sha256 prefix>.pth``, atomically.

        The checkpoint is read onto the CPU (tensors saved on a GPU are not
        put back there, and a machine without one can publish them) and
        under ``weights_only`` (see :mod:`mmdet_sparse.engine.checkpoint`),
        which no environment variable turns off here. A failed write
        leaves no partial file; a full disk raises
        :class:`CheckpointSpaceError`. Rank 0 only, like mmengine's: a
        failure ends rank 0 after training, when the other ranks wait in
        no collective.
        """
        if not self._atomic:
            return super()._publish_model(runner, ckpt_path)
        checkpoint = torch.load(
            ckpt_path, map_location='cpu', weights_only=True)
        removed = [k for k in checkpoint if k not in self.published_keys]
        for key in removed:
            checkpoint.pop(key)
        if removed:
            print_log(
                f'Key {removed} will be removed because they are not found '
                f'in published_keys. If you want to keep them, please set '
                f'`{removed}` in published_keys', logger='current')
        sha = hashlib.sha256(pickle.dumps(checkpoint)).hexdigest()
        final_path = osp.splitext(ckpt_path)[0] + f'-{sha[:8]}.pth'
        # Serialized first: a failed file write then raises the OSError
        # itself, not torch's RuntimeError without its errno.
        with io.BytesIO() as buffer:
            torch.save(checkpoint, buffer)
            data = buffer.getvalue()
        try:
            write_atomically(final_path, lambda f: f.write(data))
        except OSError as exc:
            error = self._space_error(runner, final_path, len(data),
                                      'the size of the published file', exc)
            if error is None:
                raise
            raise error from exc
        print_log(f'The checkpoint ({ckpt_path}) is published to '
                  f'{final_path}.', logger='current')

    # Deleting -----------------------------------------------------------

    def _ckpt_path(self, step: int) -> str:
        return self.file_backend.join_path(self.out_dir,
                                           self.filename_tmpl.format(step))

    def _protected(self, runner) -> set:
        """Paths never deleted: the checkpoint ``last_checkpoint`` names and
        the current best files."""
        paths = {self.last_ckpt, getattr(self, 'best_ckpt_path', None)}
        paths.update(getattr(self, 'best_ckpt_path_dict', {}).values())
        last = osp.join(runner.work_dir, 'last_checkpoint')
        if osp.isfile(last):
            with open(last) as f:
                paths.add(f.read().strip())
        return {osp.abspath(p) for p in paths if p}

    def _remove(self, runner, path: str) -> None:
        if osp.abspath(path) in self._protected(runner):
            return
        if self.file_backend.isfile(path):
            self.file_backend.remove(path)
        elif self.file_backend.isdir(path):  # DeepSpeed checkpoints
            self.file_backend.rmtree(path)
        else:
            return
        runner.logger.info(f'Removed the outdated checkpoint {path}.')

    def _remove_pending(self, runner) -> None:
        """Delete the files recorded as outdated in the message hub (those
        of a killed process, after a resume)."""
        for path in runner.message_hub.get_info(PENDING_KEY) or []:
            self._remove(runner, path)

    def _remove_temp_files(self, runner) -> None:
        """Delete temporary files a killed process left behind."""
        for folder in {self.out_dir, runner.work_dir}:
            if not osp.isdir(folder):
                continue
            for name in sorted(os.listdir(folder)):
                if is_temp_name(name):
                    os.remove(osp.join(folder, name))
                    runner.logger.warning(
                        f'Removed {name} in {folder}: an unfinished '
                        'checkpoint of a process that was killed while '
                        'saving.')
