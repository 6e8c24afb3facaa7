import os
import pickle
import tempfile
from collections import OrderedDict
from unittest import TestCase

import numpy as np
from support.pickle_ops import Pickle, array_state

from mmdet_sparse.utils.safe_pickle import UnsafePickleError, load_numpy_pickle


class _RunsCommand:
    """Unpickling this object runs a shell command."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command, ))


class TestSafePickle(TestCase):

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)

    def _dump(self, obj, protocol):
        path = os.path.join(self.tmp.name, f'p{protocol}.pkl')
        with open(path, 'wb') as f:
            pickle.dump(obj, f, protocol=protocol)
        return path

    def test_numpy_arrays_load(self):
        model = OrderedDict(
            w=np.arange(6, dtype=np.float32).reshape(2, 3),
            b=np.array([1.5, -2.0], dtype=np.float64),
            n=np.array(3, dtype=np.int64))
        obj = {'model': model, '__author__': 'torchvision',
               'matching_heuristics': True, 'iteration': np.int64(7)}
        for protocol in (2, 4, 5):
            loaded = load_numpy_pickle(self._dump(obj, protocol))
            self.assertEqual(sorted(loaded), sorted(obj))
            for key, value in model.items():
                np.testing.assert_array_equal(loaded['model'][key], value)
                self.assertEqual(loaded['model'][key].dtype, value.dtype)
            self.assertEqual(loaded['iteration'], 7)

    def test_code_is_refused_before_it_runs(self):
        marker = os.path.join(self.tmp.name, 'marker')
        hostile = {'model': {'w': np.zeros(2)},
                   'x': _RunsCommand(f'touch {marker}')}
        for protocol in (2, 5):
            path = self._dump(hostile, protocol)
            with self.assertRaisesRegex(UnsafePickleError,
                                        r'p\d\.pkl.*system'):
                load_numpy_pickle(path)
            self.assertFalse(os.path.exists(marker))
        # Arbitrary callables hidden in an object array are refused too.
        path = self._dump({'a': np.array([_RunsCommand(f'touch {marker}')],
                                         dtype=object)}, 4)
        with self.assertRaises(UnsafePickleError):
            load_numpy_pickle(path)
        self.assertFalse(os.path.exists(marker))

    def test_numpy_state_tampering_is_refused(self):
        """The checked NumPy stand-ins serve plain pickles too: a dtype
        state that marks float64 as holding objects, or an array whose byte
        count does not match its shape, is refused."""
        data = np.arange(2.0).tobytes()
        cases = {
            'alters dtype': lambda p: array_state(
                p, 'f8', (2, ), data,
                dtype_state=(3, '<', None, None, None, -1, -1, 0x01)),
            '16 bytes': lambda p: array_state(p, 'f8', (4, ), data),
        }
        for error, write in cases.items():
            with self.subTest(error):
                path = os.path.join(self.tmp.name, 'tampered.pkl')
                with open(path, 'wb') as f:
                    f.write(Pickle().value(write).dumps())
                with self.assertRaisesRegex(UnsafePickleError, error):
                    load_numpy_pickle(path)
        with self.subTest('untampered'):
            with open(path, 'wb') as f:
                f.write(Pickle().value(
                    lambda p: array_state(p, 'f8', (2, ), data)).dumps())
            np.testing.assert_array_equal(load_numpy_pickle(path),
                                          np.arange(2.0))
