"""Checkpoints given as URLs: downloaded once, then read like local files.

mmengine reads an ``http(s)://`` checkpoint through ``torch.hub``'s
``load_state_dict_from_url``, which unpickles it with ``weights_only=False``:
a downloaded file could run code. The tools therefore turn a URL into a
local file first (:func:`resolve_checkpoint`), in the cache mmengine uses
(``<torch hub dir>/checkpoints``, ``$TORCH_HOME``), and hand that path to
the usual loader: ``torch.load`` with ``weights_only=True`` and only the
stand-ins of :mod:`mmdet_sparse.engine.checkpoint` allowed.
"""
import http.client
import os
import os.path as osp
from typing import Optional
from urllib.parse import urlparse

import torch.hub

URL_SCHEMES = ('http://', 'https://')


class CheckpointDownloadError(RuntimeError):
    """A checkpoint URL could not be downloaded (no network, HTTP error)."""


def is_url(path: str) -> bool:
    """Whether ``path`` is an ``http(s)://`` URL."""
    return path.lower().startswith(URL_SCHEMES)


def checkpoint_cache_dir() -> str:
    """The folder mmengine downloads URL checkpoints into."""
    return osp.join(torch.hub.get_dir(), 'checkpoints')


def resolve_checkpoint(checkpoint: str,
                       cache_dir: Optional[str] = None) -> str:
    """The local file of ``checkpoint``.

    Args:
        checkpoint (str): A file path (returned as it is) or an
            ``http(s)://`` URL.
        cache_dir (str, optional): Download folder; defaults to
            :func:`checkpoint_cache_dir`. A file already there under the
            URL's file name is used without downloading.

    Returns:
        str: The path to load (nothing is loaded here).

    Raises:
        CheckpointDownloadError: The download failed; the message names the
            URL and says to download it by hand.
    """
    if not is_url(checkpoint):
        return checkpoint
    cache_dir = cache_dir or checkpoint_cache_dir()
    name = osp.basename(urlparse(checkpoint).path)
    if not name:
        raise ValueError(f'the checkpoint URL names no file: {checkpoint}')
    path = osp.join(cache_dir, name)
    if osp.isfile(path):
        return path
    os.makedirs(cache_dir, exist_ok=True)
    try:
        # Writes a temporary file and moves it into place when complete.
        torch.hub.download_url_to_file(checkpoint, path, progress=True)
    except (OSError, http.client.HTTPException) as exc:
        # URLError, HTTPError, timeouts, refused or cut connections
        raise CheckpointDownloadError(
            f'could not download the checkpoint {checkpoint} ({exc}). '
            'Download the file by hand (for example on a machine with '
            'network access) and pass its local path instead of the URL, '
            f'or put it into {cache_dir}.') from exc
    return path
