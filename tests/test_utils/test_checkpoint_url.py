"""Checkpoint URLs (``mmdet_sparse.utils.checkpoint_url``) without network:
the downloader is replaced by one that fails as an unreachable host does, or
by one that writes a file into the temporary cache."""
import os
import os.path as osp
import pickle
import socket
import tempfile
import unittest
import urllib.error
from unittest import mock

import cv2
import numpy as np
import torch
from mmengine.runner import CheckpointLoader

from support.helpers import load_script

from mmdet_sparse.utils.checkpoint_url import (CheckpointDownloadError,
                                               checkpoint_cache_dir,
                                               is_url, resolve_checkpoint)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
URL = ('https://download.openmmlab.com/mmdetection/v2.0/sparse_rcnn/'
       'sparse_rcnn_r50_fpn_1x_coco/'
       'sparse_rcnn_r50_fpn_1x_coco_20201222_214453-dc79b137.pth')
DOWNLOAD = 'torch.hub.download_url_to_file'


def _offline(url, dst, *args, **kwargs):
    """What ``download_url_to_file`` raises when the host cannot be
    resolved (urllib wraps the socket error)."""
    raise urllib.error.URLError(
        socket.gaierror(-3, 'Temporary failure in name resolution'))


def _load_tool(path: str):
    return load_script(path, name='tool_' + osp.basename(path)[:-3])


class _Hostile:
    """Pickles as a call of ``os.mkdir``: loading it must not make the
    folder."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return os.mkdir, (self.path, )


class TestCheckpointUrl(unittest.TestCase):

    def setUp(self) -> None:
        self._tmp = tempfile.TemporaryDirectory()
        self.tmp = self._tmp.name
        self.cache = osp.join(self.tmp, 'cache')

    def tearDown(self) -> None:
        self._tmp.cleanup()

    def test_paths_unchanged(self) -> None:
        with mock.patch(DOWNLOAD) as download:
            for path in ('ckpt.pth', '/abs/ckpt.pth', 'torchvision://x'):
                self.assertEqual(resolve_checkpoint(path, self.cache), path)
        download.assert_not_called()
        self.assertTrue(is_url(URL) and is_url('HTTP://a/b.pth'))
        self.assertFalse(is_url('ckpt.pth'))
        self.assertEqual(checkpoint_cache_dir(),
                         osp.join(torch.hub.get_dir(), 'checkpoints'))

    def test_offline_error_names_url_and_what_to_do(self) -> None:
        with mock.patch(DOWNLOAD, side_effect=_offline):
            with self.assertRaises(CheckpointDownloadError) as ctx:
                resolve_checkpoint(URL, self.cache)
        message = str(ctx.exception)
        self.assertIn(URL, message)
        self.assertIn('name resolution', message)
        self.assertIn('Download the file by hand', message)
        self.assertIn('pass its local path', message)
        self.assertIsInstance(ctx.exception.__cause__, urllib.error.URLError)
        self.assertFalse(osp.exists(osp.join(self.cache, osp.basename(URL))))

    def test_download_once_then_safe_load(self) -> None:
        state = {'w': torch.arange(6.).reshape(2, 3)}
        meta = {'epoch': 3, 'best': np.float64(0.25)}

        def write(url, dst, *args, **kwargs):
            torch.save({'state_dict': state, 'meta': meta}, dst)

        with mock.patch(DOWNLOAD, side_effect=write) as download:
            path = resolve_checkpoint(URL, self.cache)
            self.assertEqual(resolve_checkpoint(URL, self.cache), path)
        download.assert_called_once()
        self.assertEqual(download.call_args.args[:2], (URL, path))
        self.assertEqual(path, osp.join(self.cache, osp.basename(URL)))
        # Read as mmengine reads a local file: torch.load(weights_only).
        ckpt = CheckpointLoader.load_checkpoint(path, map_location='cpu')
        self.assertTrue(torch.equal(ckpt['state_dict']['w'], state['w']))
        self.assertEqual(ckpt['meta'], meta)

    def test_downloaded_file_runs_no_code(self) -> None:
        marker = osp.join(self.tmp, 'made_by_the_checkpoint')

        def write(url, dst, *args, **kwargs):
            torch.save({'state_dict': {}, 'meta': _Hostile(marker)}, dst)

        with mock.patch(DOWNLOAD, side_effect=write):
            path = resolve_checkpoint(URL, self.cache)
        with self.assertRaises(pickle.UnpicklingError):
            CheckpointLoader.load_checkpoint(path, map_location='cpu')
        self.assertFalse(osp.exists(marker))

    def test_tools_resolve_the_url(self) -> None:
        """Each tool hands a URL to resolve_checkpoint (here: offline)."""
        image = osp.join(self.tmp, 'img.png')
        cv2.imwrite(image, np.zeros((8, 8, 3), np.uint8))
        config = osp.join(REPO, 'configs', 'sparse_rcnn_r50_fpn_1x_coco.py')
        runs = {
            'tools/test.py': [config, URL],
            'tools/infer.py': [config, URL, image, '--out-dir',
                               osp.join(self.tmp, 'out')],
            'tools/deployment/export_onnx.py': [
                config, URL, '--out', osp.join(self.tmp, 'm.onnx')],
        }
        for tool, argv in runs.items():
            with self.subTest(tool=tool), mock.patch(
                    DOWNLOAD, side_effect=_offline), mock.patch(
                        'torch.hub.get_dir', return_value=self.tmp):
                with self.assertRaisesRegex(CheckpointDownloadError,
                                            'by hand'):
                    _load_tool(tool).main(argv)
