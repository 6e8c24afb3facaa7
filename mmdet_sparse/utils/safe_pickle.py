"""Reading pickles of NumPy arrays without running code from the file.

detectron2's ``.pkl`` checkpoints are plain pickles of dicts of NumPy
arrays (``pickle.dump({'model': {name: ndarray}, '__author__': ...})``). A
pickle can call any importable function while it is read; this module's
unpickler resolves only the globals that rebuild NumPy arrays, dtypes and
scalars (and ``collections.OrderedDict``, ``_codecs.encode``), so a file
that asks for anything else (``os.system``, ``builtins.eval``, ...) is
refused before it runs.
"""
import codecs
import collections
import pickle
from typing import Any, Dict, Tuple

import numpy as np


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for a global outside the allow-list."""


def _allowed_globals() -> Dict[Tuple[str, str], Any]:
    """``(module, name)`` -> object for the globals a pickle of NumPy arrays
    uses, under the names NumPy 1.x and 2.x write."""
    reconstruct = np.ndarray(0).__reduce__()[0]  # multiarray._reconstruct
    scalar = np.float32(0).__reduce__()[0]  # multiarray.scalar
    allowed = {
        ('collections', 'OrderedDict'): collections.OrderedDict,
        # Protocol 2 pickles written by Python 3 store bytes (an array's
        # data) as _codecs.encode(text, 'latin1').
        ('_codecs', 'encode'): codecs.encode,
    }
    # Protocol 5 rebuilds plain-data arrays with numeric._frombuffer.
    frombuffer = np.arange(2).__reduce_ex__(5)[0]
    for core in ('numpy.core', 'numpy._core'):
        allowed[(core + '.multiarray', '_reconstruct')] = reconstruct
        allowed[(core + '.multiarray', 'scalar')] = scalar
        allowed[(core + '.numeric', '_frombuffer')] = frombuffer
    allowed[('numpy', 'ndarray')] = np.ndarray
    allowed[('numpy', 'dtype')] = np.dtype
    # NumPy >= 1.25 may name a dtype by its class (numpy.dtypes.Float32DType).
    for code in '?bhilqBHILQefdg':
        cls = type(np.dtype(code))
        allowed[('numpy.dtypes', cls.__name__)] = cls
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
        except UnsafePickleError as err:
            raise UnsafePickleError(f'{path}: {err}') from None
