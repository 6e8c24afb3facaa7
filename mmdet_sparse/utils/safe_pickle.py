"""Reading pickles of NumPy arrays without running code from the file.

detectron2's ``.pkl`` checkpoints are plain pickles of dicts of NumPy
arrays (``pickle.dump({'model': {name: ndarray}, '__author__': ...})``). A
pickle can call any importable function while it is read; this module's
unpickler resolves only the globals that rebuild NumPy arrays, dtypes and
scalars (and ``collections.OrderedDict``, ``_codecs.encode``), so a file
that asks for anything else (``os.system``, ``builtins.eval``, ...) is
refused before it runs.
"""
import collections
import pickle
from typing import Any, Dict, Tuple

from mmdet_sparse.engine.checkpoint import numpy_stand_ins


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for a global outside the allow-list, or for a NumPy
    object that the checked stand-ins refuse."""


def _latin1_bytes(text: Any, encoding: Any = 'latin1') -> bytes:
    """``_codecs.encode`` as protocol-2 pickles written by Python 3 use it
    for ``bytes`` (an array's data): latin-1 text only."""
    if type(text) is not str or encoding not in ('latin1', 'latin-1'):
        raise UnsafePickleError('refusing _codecs.encode other than '
                                'latin-1 text to bytes')
    return text.encode('latin1')


def _allowed_globals() -> Dict[Tuple[str, str], Any]:
    """``(module, name)`` -> object for the globals a pickle of NumPy arrays
    uses: NumPy's served by the checked stand-ins of
    :func:`~mmdet_sparse.engine.checkpoint.numpy_stand_ins` (a dtype's state
    cannot alter it, byte counts must match), plus ``OrderedDict`` and
    latin-1 ``_codecs.encode``."""
    allowed = {
        ('collections', 'OrderedDict'): collections.OrderedDict,
        ('_codecs', 'encode'): _latin1_bytes,
    }
    for name, stand_in in numpy_stand_ins().items():
        module, _, attr = name.rpartition('.')
        allowed[(module, attr)] = stand_in
    return allowed


class NumpyUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds only NumPy arrays, dtypes, scalars and
    plain containers; any other global raises :class:`UnsafePickleError`."""

    _ALLOWED = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f'refusing to load global {module}.{name}: only NumPy '
                'arrays, dtypes and scalars are allowed') from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(
            'refusing a persistent id: this is not a plain pickle of NumPy '
            'arrays (a torch.save file? use the .pth loader)')


def load_numpy_pickle(path: str) -> Any:
    """Read a pickle of NumPy arrays (Python 2 pickles too, as latin-1).

    Args:
        path (str): The ``.pkl`` file.

    Returns:
        The unpickled object (dicts, lists, NumPy arrays and scalars).

    Raises:
        UnsafePickleError: The file asks for any other global; nothing of
            it has run.
    """
    with open(path, 'rb') as f:
        try:
            return NumpyUnpickler(f, encoding='latin1').load()
        except pickle.UnpicklingError as err:
            raise UnsafePickleError(f'{path}: {err}') from None
