"""Loading the checkpoints that mmengine's Runner writes, without running
code from them.

Since PyTorch 2.6 ``torch.load`` defaults to ``weights_only=True``: a
restricted unpickler that builds tensors, containers and plain values, and
calls only allow-listed globals. mmengine loads checkpoints without
overriding that default, and a Runner checkpoint holds three things beyond
it:

* the message hub's :class:`~mmengine.logging.HistoryBuffer` objects, whose
  pickled state names the statistics methods ``min``, ``max``, ``current``
  and ``mean`` through ``builtins.getattr(HistoryBuffer, name)``;
* the NumPy arrays inside them (``numpy._core.multiarray._reconstruct``,
  ``numpy.ndarray``, ``numpy.dtype``);
* NumPy scalars in ``meta`` (``numpy._core.multiarray.scalar``).

Allow-listing those globals as they are would open the loader: a real
``getattr`` walks from any allowed object to ``__globals__`` and from there
to every module (and to ``eval``); ``numpy.dtype`` accepts a state that marks
a float type as holding Python objects, which makes NumPy read raw file
bytes as object pointers; ``HistoryBuffer.__setstate__`` writes whatever the
file gives into a dictionary shared by the whole process.

So each name is served by a stand-in that accepts exactly what a Runner
writes and refuses everything else with an error naming what was refused:

========================================  ===================================
global in the file                        served by
========================================  ===================================
``builtins.getattr``                      :func:`_statistics_getattr`: only
                                          ``HistoryBuffer.{min,max,current,
                                          mean}``
``mmengine...HistoryBuffer``              :class:`_CheckedHistoryBuffer`:
                                          state keys, types and methods
                                          checked, then a plain HistoryBuffer
``numpy.dtype``                           :func:`_plain_dtype`: booleans,
                                          numbers and strings; the dtype
                                          NumPy sees is rebuilt from its name
``numpy.ndarray``, ``..._reconstruct``    :class:`_CheckedArray`: state
                                          checked (shape, size, dtype)
``..._core.multiarray.scalar``            :func:`_plain_scalar`
``builtins.bytes``                        :func:`_empty_bytes`: ``bytes()``
                                          only (an empty array's data)
========================================  ===================================

NumPy 1.x spells the module ``numpy.core.multiarray``; both are served.
"""
import math
import os
import pickle
import warnings
from typing import Any, Dict, List, Tuple

import numpy as np
from mmengine.logging import HistoryBuffer

# What ``HistoryBuffer.__getstate__`` puts into a checkpoint.
_HISTORY_STATE_KEYS = frozenset(
    {'_log_history', '_count_history', 'max_length', 'statistics_methods'})
_STATISTICS = ('min', 'max', 'current', 'mean')
# NumPy dtype kinds a Runner checkpoint can hold: bool, signed, unsigned,
# float, complex, bytes, str. Not object, void (records), datetime.
_PLAIN_KINDS = 'biufcSU'
_NUMPY_CORE = ('numpy._core.multiarray', 'numpy.core.multiarray')


def _refuse(what: str) -> pickle.UnpicklingError:
    return pickle.UnpicklingError(
        f'{what}. Runner checkpoints never contain this; the file was not '
        'written by mmengine\'s Runner or was altered. It was not loaded.')


def _describe(obj: Any) -> str:
    """A name for ``obj`` that calls none of its methods."""
    if isinstance(obj, type):
        return f'class {obj.__module__}.{obj.__qualname__}'
    return f'a {type(obj).__qualname__} object'


def _statistics_getattr(owner: Any, name: Any, *default: Any) -> Any:
    """``getattr`` for unpickling: resolves only the statistics methods of
    :class:`HistoryBuffer` (how they are pickled by reference)."""
    if (not default
            and (owner is HistoryBuffer or owner is _CheckedHistoryBuffer)
            and type(name) is str and name in _STATISTICS):
        return vars(HistoryBuffer)[name]
    shown = repr(name) if type(name) is str else _describe(name)
    raise _refuse(f'The checkpoint asks for attribute {shown} of '
                  f'{_describe(owner)}; only HistoryBuffer.'
                  f'{{{",".join(_STATISTICS)}}} may be looked up')


class _CheckedHistoryBuffer(HistoryBuffer):
    """Stands for :class:`HistoryBuffer` while a checkpoint is unpickled.

    The state is checked before :class:`HistoryBuffer` sees it (its
    ``__setstate__`` copies the ``statistics_methods`` of the file into the
    dictionary that every HistoryBuffer of the process shares); then the
    object becomes a plain HistoryBuffer.
    """

    def __init__(self, *args, **kwargs) -> None:
        # Runner checkpoints rebuild HistoryBuffers from their state only.
        raise _refuse('The checkpoint calls HistoryBuffer(...)')

    def __setstate__(self, state: Any) -> None:
        if type(state) is not dict or not set(state) <= _HISTORY_STATE_KEYS:
            keys = sorted(map(str, state)) if type(state) is dict else None
            raise _refuse(f'A HistoryBuffer state in the checkpoint is '
                          f'{_describe(state)} with keys {keys}; expected '
                          f'keys {sorted(_HISTORY_STATE_KEYS)}')
        state = dict(state)
        for key in ('_log_history', '_count_history'):
            value = state.get(key)
            if type(value) is not _CheckedArray or value.ndim != 1:
                raise _refuse(f'HistoryBuffer.{key} in the checkpoint is '
                              f'{_describe(value)}, not a 1-d array')
            state[key] = value.view(np.ndarray)
        if type(state.get('max_length')) is not int:
            raise _refuse('HistoryBuffer.max_length in the checkpoint is '
                          f'{_describe(state.get("max_length"))}, not an int')
        methods = state.get('statistics_methods', {})
        if type(methods) is not dict or any(
                type(key) is not str or key not in _STATISTICS
                or value is not vars(HistoryBuffer)[key]
                for key, value in methods.items()):
            raise _refuse('HistoryBuffer.statistics_methods in the '
                          'checkpoint names other functions than '
                          f'HistoryBuffer.{{{",".join(_STATISTICS)}}}')
        HistoryBuffer.__setstate__(self, state)
        self.__class__ = HistoryBuffer


class _DtypeName:
    """A NumPy dtype named by a checkpoint, kept away from NumPy.

    ``numpy.dtype`` objects are pickled as ``dtype(name)`` followed by a
    state that NumPy applies unchecked (its flags can make ``float64`` hold
    object pointers). The unpickler builds this placeholder instead; it
    accepts only the state NumPy itself writes for that name, and arrays and
    scalars are made with a dtype rebuilt from the name.
    """

    __slots__ = ('dtype', )

    def __new__(cls, dtype: np.dtype) -> '_DtypeName':
        if not isinstance(dtype, np.dtype):
            raise _refuse(f'The checkpoint builds a dtype from '
                          f'{_describe(dtype)}')
        self = super().__new__(cls)
        self.dtype = dtype
        return self

    def __setstate__(self, state: Any) -> None:
        expected = self.dtype.__reduce__()[2]
        if type(state) is not tuple or len(state) != len(expected):
            raise _refuse(f'The state of dtype {self.dtype} in the checkpoint '
                          f'is {_describe(state)}')
        if type(state[1]) is str and {state[1], expected[1]} == {'<', '>'}:
            self.dtype = self.dtype.newbyteorder(state[1])
            expected = self.dtype.__reduce__()[2]
        if any(type(got) is not type(want) or got != want
               for got, want in zip(state, expected)):
            raise _refuse(f'The checkpoint alters dtype {self.dtype}: state '
                          f'{_plain_repr(state)} instead of {expected}')


def _plain_repr(state: tuple) -> str:
    return '(' + ', '.join(
        repr(v) if type(v) in (int, str, type(None)) else _describe(v)
        for v in state) + ')'


def _plain_dtype(name: Any,
                 align: Any = False,
                 copy: Any = True) -> _DtypeName:
    """``numpy.dtype`` for unpickling: bool, number and string types by
    name (``'f8'``, ``'<i8'``, ``'U5'``), nothing else."""
    if type(name) is not str or type(align) is not bool or type(
            copy) is not bool:
        raise _refuse(f'The checkpoint builds a dtype from {_describe(name)}')
    try:
        dtype = np.dtype(name)
    except TypeError as exc:
        raise _refuse(f'The checkpoint names dtype {name!r}') from exc
    if (dtype.kind not in _PLAIN_KINDS or dtype.hasobject
            or dtype.fields is not None or dtype.subdtype is not None):
        raise _refuse(f'The checkpoint names dtype {name!r} '
                      f'(kind {dtype.kind!r}); only bool, number and string '
                      'dtypes are loaded')
    return _DtypeName(dtype)


class _CheckedArray(np.ndarray):
    """``numpy.ndarray`` while a checkpoint is unpickled: its state is
    checked (dtype, shape, byte count) before NumPy reads it. Pickles as a
    plain ``numpy.ndarray``."""

    def __new__(cls, *args, **kwargs):
        raise _refuse('The checkpoint calls numpy.ndarray(...)')

    def __setstate__(self, state: Any) -> None:
        if type(state) is not tuple or len(state) != 5:
            raise _refuse(f'An array state in the checkpoint is '
                          f'{_describe(state)}')
        version, shape, dtype, fortran, data = state
        if type(data) is str:  # Python 2 pickles read as latin-1
            data = data.encode('latin1')
        if (type(version) is not int or version != 1
                or type(shape) is not tuple
                or any(type(n) is not int or n < 0 for n in shape)
                or type(dtype) is not _DtypeName or type(fortran) is not bool
                or type(data) is not bytes):
            raise _refuse(f'An array state in the checkpoint is '
                          f'{_plain_repr(state)}')
        size = math.prod(shape) * dtype.dtype.itemsize
        if len(data) != size:
            raise _refuse(f'An array of shape {shape} and dtype '
                          f'{dtype.dtype} in the checkpoint has {len(data)} '
                          f'bytes instead of {size}')
        np.ndarray.__setstate__(self,
                                (version, shape, dtype.dtype, fortran, data))

    def __reduce__(self):
        return self.view(np.ndarray).__reduce__()

    def __reduce_ex__(self, protocol):
        return self.view(np.ndarray).__reduce_ex__(protocol)


def _empty_array(subtype: Any, shape: Any, placeholder: Any) -> _CheckedArray:
    """``numpy._core.multiarray._reconstruct`` for unpickling: the empty
    array that ``ndarray.__reduce__`` asks for, filled by its state."""
    if (subtype is not _CheckedArray or type(shape) is not tuple
            or shape != (0, ) or type(placeholder) is not bytes):
        raise _refuse(f'The checkpoint reconstructs an array of '
                      f'{_describe(subtype)}')
    return np.ndarray.__new__(_CheckedArray, (0, ), np.uint8)


def _plain_scalar(dtype: Any, data: Any) -> np.generic:
    """``numpy._core.multiarray.scalar`` for unpickling: a bool, number or
    string scalar from exactly ``itemsize`` bytes."""
    if type(dtype) is not _DtypeName or type(data) is not bytes or len(
            data) != dtype.dtype.itemsize:
        raise _refuse(f'The checkpoint builds a NumPy scalar from '
                      f'{_describe(dtype)} and {_describe(data)}')
    return np.frombuffer(data, dtype.dtype)[0]


def _empty_bytes(*args: Any) -> bytes:
    """``builtins.bytes`` for unpickling: protocol 2 writes ``b''`` (the
    data of an empty array) as ``bytes()``; no other call is accepted."""
    if args:
        raise _refuse(f'The checkpoint calls bytes() with {len(args)} '
                      'arguments')
    return b''


def _array_from_buffer(buffer: Any, dtype: Any, shape: Any,
                       order: Any) -> np.ndarray:
    """``numpy._core.numeric._frombuffer`` for unpickling (arrays pickled
    with protocol 5): a bool, number or string array from exactly its
    bytes."""
    if (type(buffer) not in (bytes, bytearray) or type(dtype) is not _DtypeName
            or type(shape) is not tuple
            or any(type(n) is not int or n < 0 for n in shape)
            or order not in ('C', 'F')):
        raise _refuse('The checkpoint builds an array from '
                      f'{_describe(buffer)}, {_describe(dtype)}, '
                      f'{_describe(shape)}')
    size = math.prod(shape) * dtype.dtype.itemsize
    if len(buffer) != size:
        raise _refuse(f'An array of shape {shape} and dtype {dtype.dtype} in '
                      f'the checkpoint has {len(buffer)} bytes instead of '
                      f'{size}')
    return np.frombuffer(buffer, dtype.dtype).reshape(shape,
                                                      order=order).copy()


def numpy_stand_ins() -> Dict[str, Any]:
    """Pickled name -> checked stand-in for every global a pickle of NumPy
    arrays, dtypes and scalars uses (NumPy 1.x and 2.x spellings, pickle
    protocols 2 to 5). Shared by the checkpoint loader and by readers of
    plain NumPy pickles (:mod:`mmdet_sparse.utils.safe_pickle`)."""
    stand_ins = {
        'numpy.dtype': _plain_dtype,
        'numpy.ndarray': _CheckedArray,
        'builtins.bytes': _empty_bytes,
        # Only to let an unpickler apply a dtype's state (BUILD); no file
        # names it.
        f'{__name__}._DtypeName': _DtypeName,
    }
    for module in _NUMPY_CORE:
        stand_ins[f'{module}._reconstruct'] = _empty_array
        stand_ins[f'{module}.scalar'] = _plain_scalar
        numeric = module.replace('multiarray', 'numeric')
        stand_ins[f'{numeric}._frombuffer'] = _array_from_buffer
    return stand_ins


def runner_checkpoint_globals() -> List[Tuple[Any, str]]:
    """The ``(stand-in, pickled name)`` pairs that
    :func:`allow_runner_checkpoints` adds to PyTorch's allow-list."""
    pairs = [
        (_statistics_getattr, 'builtins.getattr'),
        (_CheckedHistoryBuffer,
         f'{HistoryBuffer.__module__}.{HistoryBuffer.__qualname__}'),
    ]
    return pairs + [(obj, name) for name, obj in numpy_stand_ins().items()]


def allow_runner_checkpoints() -> None:
    """Let ``torch.load(weights_only=True)`` read Runner checkpoints (see
    the module docstring for what is accepted).

    Does nothing on PyTorch < 2.6: ``torch.load`` there does not restrict
    loading unless asked to, and cannot take named stand-ins.
    """
    import torch
    version = tuple(int(v) for v in torch.__version__.split('.')[:2])
    if version < (2, 6):
        return
    torch.serialization.add_safe_globals(runner_checkpoint_globals())
    if os.environ.get('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '0').lower() in (
            '1', 'y', 'yes', 'true'):
        warnings.warn(
            'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is set: torch.load unpickles '
            'checkpoints unrestricted, and a checkpoint file can run any '
            'code. Unset it; Runner checkpoints load without it.')
