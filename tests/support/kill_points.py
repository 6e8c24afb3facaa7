"""Test-only: SIGKILL this training process at a chosen file operation of
checkpoint saving.

Imported through a config's ``custom_imports``. With the environment
variable ``CKPT_KILL_AT='<kind>:<n>'`` the process kills itself with
SIGKILL (no Python clean-up runs) right before its ``n``-th file operation
of that kind, after appending the point to the file ``CKPT_KILL_LOG``.
Checkpoint bytes go to disk in four chunks, so a kill can leave a partly
written file. Kinds:

* ``write0`` .. ``write3``: before chunk 0-3 of a ``.pth`` file
  (``write0`` leaves an empty file);
* ``fsync-ckpt``, ``fsync-last``, ``fsync-dir``: before flushing a
  temporary checkpoint, a temporary ``last_checkpoint`` or the folder;
* ``replace-ckpt``, ``replace-last``: before renaming a temporary file over
  a checkpoint or over ``last_checkpoint``;
* ``remove-ckpt``: before deleting a checkpoint.
"""
import os
import os.path as osp
import signal

from mmengine.fileio.backends import local_backend

KINDS = ('write0', 'write1', 'write2', 'write3', 'fsync-ckpt', 'fsync-last',
         'fsync-dir', 'replace-ckpt', 'replace-last', 'remove-ckpt')

_SPEC = os.environ.get('CKPT_KILL_AT')
_LOG = os.environ.get('CKPT_KILL_LOG')
_counts: dict = {}


def _point(kind: str, path: str) -> None:
    """Count an operation; die if it is the chosen one."""
    _counts[kind] = _counts.get(kind, 0) + 1
    if f'{kind}:{_counts[kind]}' != _SPEC:
        return
    if _LOG:
        with open(_LOG, 'a') as f:
            f.write(f'{_SPEC} {osp.basename(path)}\n')
    os.kill(os.getpid(), signal.SIGKILL)


def _put(self, obj: bytes, filepath) -> None:
    filepath = str(filepath)
    os.makedirs(osp.dirname(filepath), exist_ok=True)
    step = -(-len(obj) // 4)
    with open(filepath, 'wb') as f:
        for i in range(4):
            if filepath.endswith('.pth') or '.pth.' in filepath:
                _point(f'write{i}', filepath)
            f.write(obj[i * step:(i + 1) * step])
            f.flush()


def _wrap_fsync(fsync):

    def wrapped(fd):
        path = os.readlink(f'/proc/self/fd/{fd}')
        name = osp.basename(path)
        if osp.isdir(path):
            _point('fsync-dir', path)
        elif 'last_checkpoint' in name:
            _point('fsync-last', path)
        elif '.pth' in name:
            _point('fsync-ckpt', path)
        return fsync(fd)

    return wrapped


def _wrap_replace(replace):

    def wrapped(src, dst, *args, **kwargs):
        kind = ('replace-last' if osp.basename(dst) == 'last_checkpoint'
                else 'replace-ckpt')
        _point(kind, dst)
        return replace(src, dst, *args, **kwargs)

    return wrapped


def _wrap_remove(remove):

    def wrapped(path, *args, **kwargs):
        if str(path).endswith('.pth'):
            _point('remove-ckpt', path)
        return remove(path, *args, **kwargs)

    return wrapped


if _SPEC:
    local_backend.LocalBackend.put = _put
    os.fsync = _wrap_fsync(os.fsync)
    os.replace = _wrap_replace(os.replace)
    os.remove = _wrap_remove(os.remove)
    os.unlink = _wrap_remove(os.unlink)
