"""Hand-assembled pickles for the checkpoint-loading security tests.

A hostile checkpoint is an ordinary ``torch.save`` zip archive whose
``data.pkl`` was replaced. :class:`Pickle` writes protocol-2 opcodes one by
one, so a test states exactly which globals, calls and state updates the
file asks the unpickler for.
"""
import io
import pickle
import struct
import zipfile

import numpy as np
import torch


class Pickle:
    """Protocol-2 opcode writer; every method returns ``self``."""

    def __init__(self) -> None:
        self.out = bytearray(pickle.PROTO + b'\x02')

    def global_(self, module: str, name: str) -> 'Pickle':
        self.out += pickle.GLOBAL + f'{module}\n{name}\n'.encode()
        return self

    def str_(self, text: str) -> 'Pickle':
        data = text.encode()
        self.out += pickle.BINUNICODE + struct.pack('<I', len(data)) + data
        return self

    def int_(self, value: int) -> 'Pickle':
        self.out += pickle.BININT + struct.pack('<i', value)
        return self

    def bool_(self, value: bool) -> 'Pickle':
        self.out += pickle.NEWTRUE if value else pickle.NEWFALSE
        return self

    def none(self) -> 'Pickle':
        self.out += pickle.NONE
        return self

    def bytes_(self, data: bytes) -> 'Pickle':
        """``bytes`` as protocol 2 writes them: ``_codecs.encode(text,
        'latin1')``."""
        return (self.global_('_codecs', 'encode').mark()
                .str_(data.decode('latin1')).str_('latin1').tuple().reduce())

    def mark(self) -> 'Pickle':
        self.out += pickle.MARK
        return self

    def tuple(self) -> 'Pickle':
        self.out += pickle.TUPLE
        return self

    def empty_tuple(self) -> 'Pickle':
        self.out += pickle.EMPTY_TUPLE
        return self

    def empty_dict(self) -> 'Pickle':
        self.out += pickle.EMPTY_DICT
        return self

    def setitem(self) -> 'Pickle':
        self.out += pickle.SETITEM
        return self

    def reduce(self) -> 'Pickle':
        self.out += pickle.REDUCE
        return self

    def build(self) -> 'Pickle':
        self.out += pickle.BUILD
        return self

    def newobj(self) -> 'Pickle':
        self.out += pickle.NEWOBJ
        return self

    def call(self, module: str, name: str, *args) -> 'Pickle':
        """``module.name(*args)``; ``args`` are str/int/bool or callables
        that write the argument."""
        self.global_(module, name).mark()
        for arg in args:
            self.value(arg)
        return self.tuple().reduce()

    def value(self, arg) -> 'Pickle':
        if callable(arg):
            arg(self)
        elif isinstance(arg, bool):
            self.bool_(arg)
        elif isinstance(arg, int):
            self.int_(arg)
        elif isinstance(arg, bytes):
            self.bytes_(arg)
        elif arg is None:
            self.none()
        else:
            self.str_(arg)
        return self

    def getattr_(self, owner, name: str) -> 'Pickle':
        """``getattr(owner, name)`` as pickle writes it for methods."""
        return self.call('builtins', 'getattr', owner, name)

    def dict_(self, items) -> 'Pickle':
        self.empty_dict()
        for key, value in items:
            self.value(key).value(value).setitem()
        return self

    def dumps(self) -> bytes:
        return bytes(self.out + pickle.STOP)


def history_buffer(p: Pickle) -> Pickle:
    return p.global_('mmengine.logging.history_buffer', 'HistoryBuffer')


def array_state(p, dtype_name, shape, data, flags=None, dtype_state=None):
    """``numpy.ndarray`` as NumPy pickles it, with a chosen dtype state."""
    p.global_('numpy._core.multiarray', '_reconstruct').mark()
    p.global_('numpy', 'ndarray').mark().int_(0).tuple().bytes_(b'b')
    p.tuple().reduce()
    p.mark().int_(1).mark()
    for n in shape:
        p.int_(n)
    p.tuple()
    dtype(p, dtype_name, dtype_state)
    return p.bool_(False).bytes_(data).tuple().build()


def dtype(p, name, state=None):
    """``numpy.dtype(name)`` followed by ``state`` (NumPy's own by
    default)."""
    p.call('numpy', 'dtype', name, False, True)
    state = state or np.dtype(name).__reduce__()[2]
    p.mark()
    for item in state:
        p.value(item)
    return p.tuple().build()


def write_checkpoint(path: str, data_pkl: bytes) -> None:
    """A ``torch.save`` archive at ``path`` whose object pickle is
    ``data_pkl``."""
    buffer = io.BytesIO()
    torch.save({'placeholder': 0}, buffer)
    buffer.seek(0)
    with zipfile.ZipFile(buffer) as src, zipfile.ZipFile(
            path, 'w', zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith('/data.pkl'):
                data = data_pkl
            dst.writestr(info, data)
