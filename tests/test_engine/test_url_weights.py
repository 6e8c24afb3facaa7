"""Backbone weights named by URL scheme (``torchvision://``,
``open-mmlab://``, ``http(s)://``, ...) load from torch hub's cache without
running code from the file.

Every test runs with a temporary ``TORCH_HOME`` and a downloader that
raises ``URLError``: no network is used, and a hostile file must be refused
from the cache without a download being tried.
"""
import io
import os
import os.path as osp
import pickle
import shlex
import tempfile
import warnings
import zipfile
from collections import OrderedDict
from unittest import TestCase, mock
from urllib.error import URLError

import torch
import torchvision
from mmengine.model import BaseModule
from mmengine.runner import CheckpointLoader, load_checkpoint
from mmengine.runner import checkpoint as mmengine_checkpoint
from support.pickle_ops import Pickle, write_checkpoint

import mmdet_sparse  # noqa: F401  (installs the URL loaders)
from mmdet_sparse.engine import url_weights
from mmdet_sparse.engine.url_weights import UnsafeWeightsError
from mmdet_sparse.utils.checkpoint_url import CheckpointDownloadError

# init_cfg checkpoint -> file name torch hub caches it under (the table of
# docs/backbones.md, plus a plain URL).
CACHED_NAMES = {
    'torchvision://resnet50': 'resnet50-0676ba61.pth',
    'open-mmlab://resnext101_32x4d': 'resnext101_32x4d-a5af3160.pth',
    'https://download.pytorch.org/models/resnet101-63fe2227.pth':
    'resnet101-63fe2227.pth',
}
# The hostile files (TestURLWeights._hostile_files) whose code runs when
# mmengine's own loader reads them from the cache.
LIVE = {
    '__reduce__ at the top, zip format',
    '__reduce__ nested in a dict, zip format',
    '__reduce__ nested in a dict, legacy format',
    'a plain pickle, no torch format',
    'zip archive whose data.pkl calls posix.system',
    'zip archive whose data.pkl calls builtins.exec',
    'allowed torch._tensor._rebuild_from_type_v2 given posix.system',
    'single-file zip (PyTorch < 1.6 archive) holding a payload',
    'zip archive whose data.pkl calls torch.storage._load_from_bytes',
    'zip archive whose data.pkl calls torch.serialization os.system, '
    'protocol 4',
    'zip archive whose data.pkl calls torch._utils os.system, protocol 4',
    'zip archive whose data.pkl calls torch hub.os.system, protocol 4',
}


class _Touch:
    """Pickles as a call that creates ``path``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f'touch {shlex.quote(self.path)}', ))


def _torch_bytes(obj, legacy: bool = False) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, _use_new_zipfile_serialization=not legacy)
    return buffer.getvalue()


def _protocol_4(payload: bytes) -> bytes:
    """``payload`` (written by :class:`Pickle`) declared as protocol 4."""
    assert payload[:2] == pickle.PROTO + b'\x02'
    return pickle.PROTO + b'\x04' + payload[2:]


def _single_file_zip(path: str, data: bytes) -> None:
    """The archive format torch hub accepts for files of PyTorch < 1.6."""
    with zipfile.ZipFile(path, 'w') as archive:
        archive.writestr('weights.pth', data)


class TestURLWeights(TestCase):

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.cache = osp.join(self.tmp.name, 'hub', 'checkpoints')
        os.makedirs(self.cache)
        self.marker = osp.join(self.tmp.name, 'marker')
        patches = [
            mock.patch.dict(os.environ, {'TORCH_HOME': self.tmp.name}),
            mock.patch('torch.hub.download_url_to_file',
                       side_effect=URLError('network is unreachable')),
        ]
        for patch in patches:
            patch.start()
            self.addCleanup(patch.stop)
        self.download = torch.hub.download_url_to_file  # the mock
        self.assertEqual(torch.hub.get_dir(), osp.join(self.tmp.name, 'hub'))

    def tearDown(self):
        self.tmp.cleanup()

    def _cached(self, scheme: str) -> str:
        return osp.join(self.cache, CACHED_NAMES[scheme])

    def _hostile_files(self):
        """(description, writer) pairs; each writer puts a hostile file at
        the path it is given. Loaded unrestricted, the payloads of
        :data:`LIVE` create ``self.marker``; the others are refused by name
        before anything could run."""
        touch = _Touch(self.marker)
        command = f'touch {shlex.quote(self.marker)}'
        nested = {
            'state_dict':
            OrderedDict(weight=torch.zeros(2), bias=OrderedDict(x=touch))
        }

        def data_pkl(payload: bytes):
            return lambda path: write_checkpoint(path, payload)

        def raw(data: bytes):
            def write(path):
                with open(path, 'wb') as f:
                    f.write(data)
            return write

        allowed_looking = [
            # torch's own functions, not on its allow-list:
            # _load_from_bytes unpickles its bytes unrestricted.
            ('torch.storage', '_load_from_bytes',
             _torch_bytes(touch, legacy=True)),
            ('torch', 'load', self.marker),
            ('torch.hub', 'load', self.marker),
            ('torch.serialization', 'load', self.marker),
        ]
        # Dotted names reaching os.system through torch modules (protocol 4
        # resolves dots in a global's name).
        dotted = [('torch.serialization', 'os.system'),
                  ('torch._utils', 'os.system'), ('torch', 'hub.os.system')]
        files = [
            ('__reduce__ at the top, zip format',
             raw(_torch_bytes(touch))),
            ('__reduce__ nested in a dict, zip format',
             raw(_torch_bytes(nested))),
            ('__reduce__ nested in a dict, legacy format',
             raw(_torch_bytes(nested, legacy=True))),
            ('a plain pickle, no torch format', raw(pickle.dumps(touch))),
            ('zip archive whose data.pkl calls posix.system',
             data_pkl(Pickle().call('posix', 'system', command).dumps())),
            ('zip archive whose data.pkl calls builtins.exec',
             data_pkl(Pickle().call(
                 'builtins', 'exec',
                 f'open({self.marker!r}, "w").close()').dumps())),
            ('allowed torch._tensor._rebuild_from_type_v2 given posix.system',
             data_pkl(Pickle().call(
                 'torch._tensor', '_rebuild_from_type_v2',
                 lambda p: p.global_('posix', 'system'),
                 lambda p: p.global_('torch', 'Tensor'),
                 lambda p: p.mark().str_(command).tuple(),
                 lambda p: p.empty_dict()).dumps())),
            ('getattr(allowed torch function, "__globals__")',
             data_pkl(Pickle().getattr_(
                 lambda p: p.global_('torch._utils', '_rebuild_tensor_v2'),
                 '__globals__').dumps())),
            ('single-file zip (PyTorch < 1.6 archive) holding a payload',
             lambda path: _single_file_zip(
                 path, _torch_bytes(nested, legacy=True))),
        ] + [(f'zip archive whose data.pkl calls {m}.{n}',
              data_pkl(Pickle().call(m, n, arg).dumps()))
             for m, n, arg in allowed_looking] + [
                 (f'zip archive whose data.pkl calls {m} {n}, protocol 4',
                  data_pkl(_protocol_4(Pickle().call(m, n, command).dumps())))
                 for m, n in dotted]
        return files

    def _assert_refused(self, load, file_name: str):
        with self.assertRaises(UnsafeWeightsError) as cm:
            load()
        message = str(cm.exception)
        self.assertIn('Refused to load https://', message)
        self.assertIn(osp.join(self.cache, file_name), message)
        self.assertIn('nothing in it ran', message)
        # torch's advice to load unrestricted or to allow-list is dropped
        self.assertNotIn('weights_only', message)
        self.assertNotIn('safe_globals', message)
        self.assertFalse(osp.exists(self.marker), 'the payload ran')
        self.download.assert_not_called()
        return message

    def test_the_payloads_run_through_mmengines_own_loaders(self):
        # Not a tautology: mmengine's loader (torch hub, weights_only=False)
        # runs the code of these files from the cache.
        url = list(CACHED_NAMES)[2]
        ran = []
        for what, write in self._hostile_files():
            write(self._cached(url))
            try:
                with warnings.catch_warnings():
                    # torch hub on the PyTorch < 1.6 archive
                    warnings.simplefilter('ignore', FutureWarning)
                    mmengine_checkpoint.load_from_http(url)
            except Exception:
                pass
            if osp.exists(self.marker):
                ran.append(what)
                os.remove(self.marker)
        self.assertEqual(set(ran), LIVE)
        self.download.assert_not_called()

    def test_hostile_cached_files_are_refused(self):
        for scheme in CACHED_NAMES:
            for what, write in self._hostile_files():
                with self.subTest(scheme=scheme, file=what):
                    write(self._cached(scheme))
                    self._assert_refused(
                        lambda: CheckpointLoader.load_checkpoint(
                            scheme, map_location='cpu'),
                        CACHED_NAMES[scheme])
                    os.remove(self._cached(scheme))

    def test_hostile_file_through_load_checkpoint_and_init_cfg(self):
        what, write = self._hostile_files()[1]
        for scheme in ['torchvision://resnet50', 'modelzoo://resnet50',
                       'open-mmlab://resnext101_32x4d',
                       'openmmlab://resnext101_32x4d']:
            name = scheme.replace('modelzoo', 'torchvision').replace(
                'openmmlab', 'open-mmlab')
            write(self._cached(name))
            with self.subTest(scheme, via='load_checkpoint'):
                self._assert_refused(
                    lambda: load_checkpoint(
                        torch.nn.Linear(2, 2), scheme, map_location='cpu'),
                    CACHED_NAMES[name])
            with self.subTest(scheme, via="init_cfg type='Pretrained'"):
                module = BaseModule(
                    init_cfg=dict(type='Pretrained', checkpoint=scheme))
                self._assert_refused(module.init_weights, CACHED_NAMES[name])

    def test_hostile_mmcls_file_is_refused(self):
        scheme = 'mmcls://resnet50'
        url = mmengine_checkpoint.get_mmcls_models()['resnet50']
        _, write = self._hostile_files()[4]
        write(osp.join(self.cache, osp.basename(url)))
        message = self._assert_refused(
            lambda: CheckpointLoader.load_checkpoint(scheme),
            osp.basename(url))
        self.assertIn('unsupported GLOBAL posix.system', message)

    def test_genuine_state_dicts_load_offline(self):
        model = torchvision.models.resnet50()
        torch.nn.init.normal_(model.fc.weight)
        expected = model.state_dict()
        # The real file: a state dict saved by torch.save.
        path = self._cached('torchvision://resnet50')
        torch.save(expected, path)
        for scheme, map_location in [('torchvision://resnet50', None),
                                     ('modelzoo://resnet50', 'cpu'),
                                     ('torchvision://resnet50.imagenet1k_v1',
                                      lambda storage, loc: storage)]:
            with self.subTest(scheme):
                loaded = CheckpointLoader.load_checkpoint(
                    scheme, map_location=map_location)
                self.assertIsInstance(loaded, OrderedDict)
                self.assertEqual(list(loaded), list(expected))
                for key, value in expected.items():
                    self.assertTrue(torch.equal(loaded[key], value), key)
        load_checkpoint(torchvision.models.resnet50(), 'torchvision://resnet50',
                        strict=True)
        # Legacy format and the single-file zip of PyTorch < 1.6.
        small = OrderedDict(weight=torch.randn(3, 4), bias=torch.randn(3))
        url = 'https://download.pytorch.org/models/resnet101-63fe2227.pth'
        for what, write in [
            ('legacy', lambda p: open(p, 'wb').write(
                _torch_bytes(small, legacy=True))),
            ('single-file zip', lambda p: _single_file_zip(
                p, _torch_bytes(small, legacy=True))),
            ('zip, open-mmlab meta', lambda p: torch.save(
                {'state_dict': small, 'meta': {'epoch': 1, 'CLASSES': (
                    'a', 'b')}}, p)),
        ]:
            with self.subTest(what):
                write(self._cached(url))
                loaded = CheckpointLoader.load_checkpoint(url)
                loaded = loaded.get('state_dict', loaded)
                self.assertEqual(list(loaded), list(small))
                for key, value in small.items():
                    self.assertTrue(torch.equal(loaded[key], value), key)
        self.download.assert_not_called()

    def test_mmcls_keeps_the_backbone_keys(self):
        url = mmengine_checkpoint.get_mmcls_models()['resnet50']
        weight = torch.randn(4, 3, 1, 1)
        torch.save({'state_dict': OrderedDict([
            ('backbone.conv1.weight', weight),
            ('head.fc.weight', torch.randn(2, 4))]),
            'meta': {'epoch': 100}}, osp.join(self.cache, osp.basename(url)))
        loaded = CheckpointLoader.load_checkpoint('mmcls://resnet50')
        self.assertEqual(list(loaded), ['state_dict'])
        self.assertEqual(list(loaded['state_dict']), ['conv1.weight'])
        self.assertTrue(torch.equal(loaded['state_dict']['conv1.weight'],
                                    weight))

    def test_missing_file_offline_says_how_to_prefetch(self):
        folders = {
            'torchvision://resnet50': 'https://download.pytorch.org/models',
            'open-mmlab://resnext101_32x4d':
            'https://download.openmmlab.com/pretrain/third_party',
        }
        for scheme in CACHED_NAMES:
            with self.subTest(scheme):
                url = (f'{folders[scheme]}/{CACHED_NAMES[scheme]}'
                       if scheme in folders else scheme)
                with self.assertRaises(CheckpointDownloadError) as cm:
                    CheckpointLoader.load_checkpoint(scheme)
                message = str(cm.exception)
                self.assertIn(url, message)
                self.assertIn('pre-fetch', message)
                self.assertIn('$TORCH_HOME/hub/checkpoints/', message)
                self.assertIn(self.cache, message)
                self.assertIn('docs/backbones.md', message)
                self.assertIn('network is unreachable', message)
                self.assertFalse(osp.exists(self._cached(scheme)))

    def test_the_schemes_are_ours(self):
        for path, loader in [
            ('torchvision://resnet50', url_weights.load_from_torchvision),
            ('modelzoo://resnet50', url_weights.load_from_torchvision),
            ('open-mmlab://resnext101_32x4d',
             url_weights.load_from_openmmlab),
            ('openmmlab://resnext101_32x4d', url_weights.load_from_openmmlab),
            ('mmcls://resnet50', url_weights.load_from_mmcls),
            ('https://example.org/w.pth', url_weights.load_from_http),
            ('http://example.org/w.pth', url_weights.load_from_http),
            # Untouched: other backends and local files.
            ('open-mmlab:s3://bucket/w.pth',
             mmengine_checkpoint.load_from_ceph),
            ('checkpoints/w.pth', mmengine_checkpoint.load_from_local),
        ]:
            self.assertIs(CheckpointLoader._get_checkpoint_loader(path),
                          loader, path)
        url_weights.install_safe_url_loaders()  # again: nothing changes
        self.assertIs(
            CheckpointLoader._get_checkpoint_loader('torchvision://resnet50'),
            url_weights.load_from_torchvision)

    def test_distributed_rank_zero_downloads_first(self):
        url = list(CACHED_NAMES)[2]
        torch.save(OrderedDict(w=torch.ones(1)), self._cached(url))
        for rank in (0, 1):
            with self.subTest(rank=rank):
                events = []
                fetch = url_weights._fetch
                with mock.patch.object(
                        url_weights, 'get_dist_info',
                        return_value=(rank, 2)), mock.patch(
                            'torch.distributed.barrier',
                            side_effect=lambda: events.append('barrier')), \
                        mock.patch.object(
                            url_weights, '_fetch',
                            side_effect=lambda *a: events.append('fetch')
                            or fetch(*a)):
                    loaded = CheckpointLoader.load_checkpoint(url)
                self.assertEqual(events, ['fetch', 'barrier'] if rank == 0
                                 else ['barrier', 'fetch'])
                self.assertTrue(torch.equal(loaded['w'], torch.ones(1)))
