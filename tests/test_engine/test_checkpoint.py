"""Loading checkpoints never runs code from them.

Every kind of checkpoint the Runner writes loads with
``torch.load(weights_only=True)`` and equals an unrestricted load; hostile
files built opcode by opcode are refused, and the side effect each one aims
at (a marker file, a changed module or class attribute) does not happen.
"""
import glob
import os
import os.path as osp
import pickle
import subprocess
import sys
import tempfile
import textwrap
from unittest import TestCase

import numpy as np
import torch
from support.helpers import REPO
from mmengine.config import Config
from mmengine.logging import HistoryBuffer
from mmengine.runner import Runner, load_checkpoint
from support.pickle_ops import (Pickle, array_state, dtype, history_buffer,
                                write_checkpoint)
from support.tool_runs import data_config

import mmdet_sparse  # noqa: F401  (allow-lists the Runner's globals)
from mmdet_sparse.datasets import ensure_shapes_dataset

TESTS = osp.dirname(osp.dirname(osp.abspath(__file__)))

CONFIG = """
_base_ = '{repo}/configs/sparse_rcnn_r18_fpn_shapes_demo.py'
{data_cfg}
train_cfg = dict(max_epochs={epochs}, val_interval=1)
default_hooks = dict(
    logger=dict(interval=1),
    checkpoint=dict(interval=1, max_keep_ckpts=-1,
                    save_best='coco/bbox_mAP', rule='greater'),
    visualization=dict(draw=False))
custom_hooks = [
    dict(type='RNGStateHook'),
    dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.004,
         gamma=200, update_buffers=True, priority=49),
    dict(type='CheckpointHook', interval=1, by_epoch=False),
]
log_processor = dict(window_size=1)
randomness = dict(seed=0)
"""


def _make_config(tmp: str, data: str, epochs: int) -> Config:
    path = osp.join(tmp, f'ckpt_test_{epochs}.py')
    with open(path, 'w') as f:
        f.write(CONFIG.format(repo=REPO, epochs=epochs,
                              data_cfg=data_config(data, size=96,
                                                   val_batch=4)))
    cfg = Config.fromfile(path)
    # mmengine keeps one visualizer per name for the whole process: a name
    # of its own keeps this Runner's out of other tests' (deleted) folders.
    cfg.visualizer.name = f'{osp.basename(tmp)}_{epochs}'
    return cfg


def _same(a, b, where='checkpoint') -> None:
    """Recursive equality of two loaded checkpoints."""
    assert type(a) is type(b) or (isinstance(a, np.ndarray) and isinstance(
        b, np.ndarray)), f'{where}: {type(a)} vs {type(b)}'
    if isinstance(a, dict):
        assert a.keys() == b.keys(), f'{where}: {a.keys()} vs {b.keys()}'
        for key in a:
            _same(a[key], b[key], f'{where}[{key!r}]')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f'{where}[{i}]')
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b), where
    elif isinstance(a, HistoryBuffer):
        assert set(vars(a)) == set(vars(b)), where
        _same(a.data, b.data, f'{where}.data')
        assert a.max_length == b.max_length, where
    else:
        assert a == b or (a != a and b != b), f'{where}: {a!r} vs {b!r}'


def _trusted_load(path: str):
    """What the file holds, read by the unrestricted unpickler (these
    checkpoints were written by the test itself)."""
    return torch.load(path, map_location='cpu', weights_only=False)


class TestRunnerCheckpoints(TestCase):
    """Checkpoints written by a real Runner: epoch, iteration, best, EMA,
    and a resumed run."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.data = osp.join(cls.tmp.name, 'shapes')
        ensure_shapes_dataset(cls.data, num_train=8, num_val=4)
        cls.work_dir = osp.join(cls.tmp.name, 'work')
        cfg = _make_config(cls.tmp.name, cls.data, epochs=2)
        cfg.work_dir = cls.work_dir
        Runner.from_cfg(cfg).train()
        cls.statistics = dict(HistoryBuffer._statistics_methods)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def _files(self, pattern):
        files = sorted(glob.glob(osp.join(self.work_dir, pattern)))
        self.assertTrue(files, pattern)
        return files

    def test_every_kind_loads_and_equals_an_unrestricted_load(self):
        files = (self._files('epoch_*.pth') + self._files('iter_*.pth') +
                 self._files('best_coco_bbox_mAP_*.pth'))
        self.assertEqual(len(files), 2 + 4 + 1)
        for path in files:
            loaded = torch.load(path, map_location='cpu', weights_only=True)
            self.assertIn('ema_state_dict', loaded, path)
            buffers = loaded['message_hub']['log_scalars']
            self.assertIn('train/loss', buffers)
            for buf in buffers.values():
                self.assertIs(type(buf), HistoryBuffer)
                self.assertIs(type(buf.data[0]), np.ndarray)
                self.assertEqual(buf.mean(), buf.statistics('mean'))
            _same(loaded, _trusted_load(path), osp.basename(path))
        # Loading changed nothing shared by the process.
        self.assertEqual(HistoryBuffer._statistics_methods, self.statistics)

    def test_resume_through_the_runner(self):
        cfg = _make_config(self.tmp.name, self.data, epochs=3)
        cfg.work_dir = osp.join(self.tmp.name, 'resumed')
        cfg.load_from = osp.join(self.work_dir, 'epoch_2.pth')
        cfg.resume = True
        runner = Runner.from_cfg(cfg)
        runner.train()
        self.assertEqual(runner.iter, 6)  # 2 iterations per epoch
        history = runner.message_hub.get_scalar('train/loss')
        self.assertEqual(len(history.data[0]), 6)  # 4 resumed + 2 new

    def test_hostile_checkpoint_through_the_tools(self):
        """The same loaders that tools/test.py, tools/infer.py,
        tools/train.py --resume and the inferencer use."""
        marker = osp.join(self.tmp.name, 'tools_marker')
        hostile = osp.join(self.tmp.name, 'hostile.pth')
        write_checkpoint(hostile, eval_payload(marker))
        model = torch.nn.Linear(1, 1)
        with self.assertRaisesRegex(pickle.UnpicklingError, '__builtins__'):
            load_checkpoint(model, hostile, map_location='cpu')
        config = osp.join(self.tmp.name, 'ckpt_test_2.py')
        proc = subprocess.run(
            [sys.executable, 'tools/infer.py', config, hostile,
             osp.join(self.data, 'val'), '--out-dir',
             osp.join(self.tmp.name, 'infer'), '--device', 'cpu'],
            cwd=REPO, capture_output=True, text=True, timeout=300,
            env=dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, TESTS])))
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("attribute '__builtins__'", proc.stderr)
        self.assertFalse(osp.exists(marker))


def eval_payload(marker: str) -> bytes:
    """Calls ``eval`` on code that creates ``marker``, given a real
    ``getattr``: the builtins dict of ``HistoryBuffer.min`` becomes the
    attributes of a HistoryBuffer, ``getattr`` picks ``eval`` from it, and
    PyTorch's own allowed ``_rebuild_from_type_v2`` calls it."""
    code = f'open({marker!r}, "w").close()'

    def builtins_holder(p):
        history_buffer(p).empty_tuple().newobj()
        p.getattr_(lambda p: p.getattr_(history_buffer, 'min'),
                   '__builtins__')
        p.build()

    p = Pickle().global_('torch._tensor', '_rebuild_from_type_v2').mark()
    p.getattr_(builtins_holder, 'eval')
    p.global_('torch', 'Tensor').mark().str_(code).tuple().empty_dict()
    return p.tuple().reduce().dumps()


def history_state(items):
    """A HistoryBuffer built from the state ``items``."""
    def write(p):
        history_buffer(p).empty_tuple().newobj().dict_(items).build()
    return write


def float_array(values):
    data = np.asarray(values, np.float64).tobytes()
    return lambda p: array_state(p, 'f8', (len(values), ), data)


class TestHostileCheckpoints(TestCase):
    """Files that try to run code or to corrupt memory or process state
    through the allow-listed names."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.marker = osp.join(self.tmp.name, 'marker')
        HistoryBuffer()  # registers the default statistics methods
        self.statistics = dict(HistoryBuffer._statistics_methods)

    def tearDown(self):
        self.assertFalse(osp.exists(self.marker), 'the payload ran')
        self.assertEqual(HistoryBuffer._statistics_methods, self.statistics)
        self.tmp.cleanup()

    def _load(self, payload: bytes, error: str = ''):
        path = osp.join(self.tmp.name, 'ckpt.pth')
        write_checkpoint(path, payload)
        with self.assertRaisesRegex(pickle.UnpicklingError, error):
            torch.load(path, weights_only=True)

    def _loads(self, payload: bytes):
        path = osp.join(self.tmp.name, 'ok.pth')
        write_checkpoint(path, payload)
        return torch.load(path, weights_only=True)

    def test_the_getattr_exploit_ran_before_and_is_refused_now(self):
        path = osp.join(self.tmp.name, 'ckpt.pth')
        write_checkpoint(path, eval_payload(self.marker))
        # With the previous allow-list (the real getattr and HistoryBuffer)
        # the file runs its code: the test below is not a tautology.
        old = textwrap.dedent("""
            import builtins, sys, torch
            from mmengine.logging import HistoryBuffer
            torch.serialization.add_safe_globals(
                [HistoryBuffer, builtins.getattr])
            try:
                torch.load(sys.argv[1], weights_only=True)
            except Exception as exc:
                print(type(exc).__name__, exc)
            """)
        subprocess.run([sys.executable, '-c', old, path], check=True,
                       capture_output=True, timeout=120)
        self.assertTrue(osp.exists(self.marker))
        os.remove(self.marker)
        self._load(eval_payload(self.marker), "attribute '__builtins__'")

    def test_reduce_to_code_running_globals(self):
        for module, name in [('os', 'system'), ('posix', 'system'),
                             ('builtins', 'eval'), ('builtins', 'exec'),
                             ('subprocess', 'call'), ('builtins', 'getattr')]:
            with self.subTest(f'{module}.{name}'):
                if name == 'getattr':
                    # getattr itself is served, but not as a way to call.
                    payload = Pickle().call(
                        'builtins', 'getattr', lambda p: p.global_(
                            'os', 'system'), '__call__').dumps()
                    self._load(payload, 'os.system')
                    continue
                payload = Pickle().call(
                    module, name, f'touch {self.marker}').dumps()
                self._load(payload, f'{name}')

    def test_getattr_resolves_only_the_statistics_methods(self):
        names = ['__globals__', '__builtins__', '__self__', '__class__',
                 '__dict__', '__init__', '__subclasses__', '__reduce__',
                 '__setstate__', '_statistics_methods', 'register_statistics',
                 'statistics', 'update', 'mro']
        for name in names:
            with self.subTest(owner='HistoryBuffer', name=name):
                self._load(Pickle().getattr_(history_buffer, name).dumps(),
                           f"attribute '{name}'")
        for name in ['__globals__', '__builtins__', '__code__',
                     '__closure__', '__call__']:
            with self.subTest(owner='HistoryBuffer.min', name=name):
                payload = Pickle().getattr_(
                    lambda p: p.getattr_(history_buffer, 'min'), name)
                self._load(payload.dumps(), f"attribute '{name}'")
        for module, owner in [('torch', 'Tensor'), ('collections',
                                                    'OrderedDict'),
                              ('numpy', 'ndarray'), ('numpy', 'dtype')]:
            with self.subTest(owner=owner):
                payload = Pickle().getattr_(
                    lambda p: p.global_(module, owner), 'min')
                self._load(payload.dumps(), "attribute 'min'")
        with self.subTest('three arguments'):
            payload = Pickle().call('builtins', 'getattr', history_buffer,
                                    'min', None)
            self._load(payload.dumps(), "attribute 'min'")

    def test_no_module_namespace_is_reachable_for_item_assignment(self):
        import mmengine.logging.history_buffer as module
        payload = Pickle().getattr_(
            lambda p: p.getattr_(history_buffer, 'min'), '__globals__')
        payload.str_('np').str_('replaced').setitem()
        self._load(payload.dumps(), "attribute '__globals__'")
        self.assertIs(module.np, np)

    def test_history_buffer_state_is_checked(self):
        good = [('_log_history', float_array([1.0])),
                ('_count_history', float_array([1.0])),
                ('max_length', 10)]
        cases = {
            'extra key': good + [('evil', 1)],
            'statistics to another method': good + [(
                'statistics_methods',
                lambda p: p.dict_([('mean', lambda p: p.getattr_(
                    history_buffer, 'max'))]))],
            'statistics to a torch function': good + [(
                'statistics_methods', lambda p: p.dict_([(
                    'mean', lambda p: p.global_('torch._tensor',
                                                '_rebuild_from_type_v2'))]))],
            'history not an array': [('_log_history', 'x')] + good[1:],
            'max_length not an int': good[:2] + [('max_length', 'x')],
        }
        for name, items in cases.items():
            with self.subTest(name):
                self._load(Pickle().value(history_state(items)).dumps(),
                           'HistoryBuffer')
        with self.subTest('built twice'):
            payload = Pickle().value(history_state(good))
            payload.dict_([('__class__', 1)]).build()
            self._load(payload.dumps(), 'Can only build')
        with self.subTest('called'):
            payload = Pickle().call(
                'mmengine.logging.history_buffer', 'HistoryBuffer',
                float_array([1.0]), float_array([1.0]), 10)
            self._load(payload.dumps(), r'HistoryBuffer\(')
        with self.subTest('the real state loads'):
            buf = self._loads(Pickle().value(history_state(
                good + [('statistics_methods', lambda p: p.dict_(
                    [('mean', lambda p: p.getattr_(history_buffer,
                                                   'mean'))]))])).dumps())
            self.assertIs(type(buf), HistoryBuffer)
            self.assertEqual(buf.mean(), 1.0)

    def test_numpy_dtypes_and_arrays_are_checked(self):
        data = np.arange(2.0).tobytes()
        plain_state = np.dtype('f8').__reduce__()[2]
        cases = {
            # float64 whose state says "holds objects": NumPy would read
            # the bytes as object pointers.
            'dtype flags':
            (lambda p: array_state(p, 'f8', (2, ), data,
                                   dtype_state=(3, '<', None, None, None, -1,
                                                -1, 0x1f)), 'alters dtype'),
            'dtype item size':
            (lambda p: dtype(p, 'f8', (3, '<', None, None, None, 64, 1, 0)),
             'alters dtype'),
            'object dtype': (lambda p: dtype(p, 'O'), "dtype 'O'"),
            'record dtype':
            (lambda p: dtype(p, 'f8,i4', plain_state), "dtype 'f8,i4'"),
            'void dtype': (lambda p: dtype(p, 'V8'), "dtype 'V8'"),
            'datetime dtype':
            (lambda p: dtype(p, 'M8[s]', plain_state), "dtype 'M8"),
            'dtype from a non-string':
            (lambda p: p.call('numpy', 'dtype', history_buffer, False, True),
             'builds a dtype'),
            'array bytes too few':
            (lambda p: array_state(p, 'f8', (4, ), data), '16 bytes'),
            'array bytes too many':
            (lambda p: array_state(p, 'f8', (1, ), data), '16 bytes'),
            'ndarray called':
            (lambda p: p.call('numpy', 'ndarray', 2), r'ndarray\(\.\.\.\)'),
            'dtype placeholder called':
            (lambda p: p.call('mmdet_sparse.engine.checkpoint', '_DtypeName',
                              'f8'), 'builds a dtype'),
            'bytes with arguments':
            (lambda p: p.call('builtins', 'bytes', 'abc'), r'bytes\(\)'),
            'scalar bytes':
            (lambda p: p.call('numpy._core.multiarray', 'scalar',
                              lambda p: dtype(p, 'f8'), b'\0' * 4),
             'NumPy scalar'),
        }
        for name, (write, error) in cases.items():
            with self.subTest(name):
                self._load(Pickle().value(write).dumps(), error)

    def test_plain_numpy_values_round_trip(self):
        values = dict(
            f8=np.arange(3.0), i8=np.arange(4), b1=np.array([True, False]),
            u1=np.arange(3, dtype=np.uint8), c16=np.array([1 + 2j]),
            U=np.array(['ab', 'c']), S=np.array([b'ab']),
            big=np.arange(3, dtype='>i4'), empty=np.zeros((0, 3)),
            fortran=np.asfortranarray(np.arange(6.0).reshape(2, 3)),
            scalar=np.float64(0.25), int_scalar=np.int64(7),
            str_scalar=np.str_('x'))
        path = osp.join(self.tmp.name, 'values.pth')
        torch.save(values, path)
        loaded = torch.load(path, weights_only=True)
        self.assertEqual(loaded.keys(), values.keys())
        for key, value in values.items():
            with self.subTest(key):
                # As NumPy's own unpickler gives it (which, for one, makes
                # big-endian arrays native).
                expected = pickle.loads(pickle.dumps(value, protocol=2))
                self.assertEqual(loaded[key].dtype, expected.dtype)
                np.testing.assert_array_equal(loaded[key], value)
                if isinstance(value, np.ndarray):
                    # Saved again, they are plain NumPy arrays.
                    self.assertEqual(pickle.loads(pickle.dumps(
                        loaded[key])).__class__, np.ndarray)
                else:
                    self.assertIs(type(loaded[key]), type(value))

    def test_dtype_state_attack_against_the_previous_allow_list(self):
        """The previous allow-list (NumPy's real dtype and array globals)
        let a file mark float64 as holding Python objects: NumPy accepts
        the state and builds an array whose dtype says its bytes are object
        pointers (NumPy 2.4 then fails with internal errors when it frees
        or copies it). Shown in a child process; refused here."""
        data = (0x4141414141414141).to_bytes(8, 'little') * 2
        payload = Pickle().value(lambda p: array_state(
            p, 'f8', (2, ), data,
            dtype_state=(3, '<', None, None, None, -1, -1, 0x01))).dumps()
        path = osp.join(self.tmp.name, 'dtype.pth')
        write_checkpoint(path, payload)
        old = textwrap.dedent("""
            import sys, numpy as np, torch
            rec = np.ndarray(0).__reduce__()[0]
            torch.serialization.add_safe_globals(
                [np.ndarray, np.dtype, rec, type(np.dtype('f8'))])
            arr = torch.load(sys.argv[1], weights_only=True)
            print('float64 holding objects:', arr.dtype.hasobject)
            """)
        proc = subprocess.run([sys.executable, '-c', old, path],
                              capture_output=True, text=True, timeout=120)
        self.assertIn('float64 holding objects: True', proc.stdout)
        self._load(payload, 'alters dtype')
