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
"""
import hashlib
import os
import os.path as osp
import pickle
from collections import deque
from typing import Callable, IO, List, Optional

import torch
from mmengine.dist import is_main_process, master_only
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log

from mmdet_sparse.registry import HOOKS

TEMP_SUFFIX = '.incomplete'
PENDING_KEY = 'ckpts_pending_removal'


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
    """
    tmp = temp_path(path)
    with open(tmp, mode) as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
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

    def _save_file(self, runner, filename: str, **kwargs) -> None:
        """``runner.save_checkpoint`` to a temporary file, then commit it
        as ``out_dir/filename``."""
        path = self.file_backend.join_path(self.out_dir, filename)
        tmp = temp_path(path)
        runner.save_checkpoint(
            self.out_dir,
            osp.relpath(tmp, self.out_dir),
            self.file_client_args,
            backend_args=self.backend_args,
            **kwargs)
        if is_main_process():
            commit(tmp, path)

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
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            **self.args)
        if is_main_process():
            write_atomically(
                osp.join(runner.work_dir, 'last_checkpoint'),
                lambda f: f.write(self.last_ckpt), mode='w')
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
        to ``<name>-<sha256 prefix>.pth``, atomically."""
        if not self._atomic:
            return super()._publish_model(runner, ckpt_path)
        from mmengine.runner.checkpoint import _load_checkpoint
        checkpoint = _load_checkpoint(ckpt_path)
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
        write_atomically(final_path, lambda f: torch.save(checkpoint, f))
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
