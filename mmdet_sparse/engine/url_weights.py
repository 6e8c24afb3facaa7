"""Backbone weights named by URL scheme, loaded without running code.

mmengine's :class:`~mmengine.runner.CheckpointLoader` reads
``http(s)://``, ``torchvision://``, ``modelzoo://``, ``open-mmlab://``,
``openmmlab://`` and ``mmcls://`` checkpoints (the ``init_cfg=dict(
type='Pretrained', checkpoint=...)`` of the ResNet and ResNeXt configs)
through ``torch.hub.load_state_dict_from_url``, which unpickles with
``weights_only=False``, also when the file is taken from the hub cache: a
pickle put there under the expected file name runs its code.

:func:`install_safe_url_loaders` (called by ``import mmdet_sparse``) puts
loaders of the same names in their place. Each one

1. turns the scheme into its URL with mmengine's own tables (torchvision's
   weights registry, ``hub/openmmlab.json`` with ``deprecated.json`` and an
   ``open_mmlab.json`` in the mmengine home folder, ``hub/mmcls.json``);
2. gets the file through :func:`~mmdet_sparse.utils.checkpoint_url.
   resolve_checkpoint`: the cached file of torch hub (same folder, same file
   name) if present, else a download into it; rank 0 first, then the other
   ranks after a barrier, as mmengine does;
3. reads it with ``torch.load(path, map_location=..., weights_only=True)``.

ImageNet weight files are plain state dicts (tensors in ``OrderedDict``s)
and load unchanged; a file asking for anything else is refused with
:class:`UnsafeWeightsError` before any of it runs.
"""
import io
import logging
import os.path as osp
import pickle
import zipfile
from typing import Any, Callable, Dict, Optional
from urllib.parse import urlparse

import torch
from mmengine.dist import get_dist_info
from mmengine.logging import print_log
from mmengine.runner.checkpoint import (CheckpointLoader, _get_mmengine_home,
                                        _process_mmcls_checkpoint,
                                        get_deprecated_model_names,
                                        get_external_models, get_mmcls_models,
                                        get_torchvision_models)

from ..utils.checkpoint_url import (CheckpointDownloadError,
                                    checkpoint_cache_dir, is_url,
                                    resolve_checkpoint)

PREFETCH_DOC = 'docs/backbones.md ("Getting the pretrained weights")'


class UnsafeWeightsError(pickle.UnpicklingError):
    """A weights file asks the unpickler for more than tensors and plain
    containers; nothing of it was run."""


def _torch_load(path: str, map_location: Any, source: str) -> Any:
    """``torch.load(path, weights_only=True)``; ``source`` (the URL or
    scheme name) is named in the error when the file is refused.

    A zip holding one single file (the archive format torch hub still
    accepts for files saved by PyTorch < 1.6) is read from that member, in
    memory, under the same restriction.
    """
    try:
        if _is_single_file_zip(path):
            with zipfile.ZipFile(path) as archive:
                member = archive.infolist()[0]
                buffer = io.BytesIO(archive.read(member))
            return torch.load(
                buffer, map_location=map_location, weights_only=True)
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeWeightsError(
            f'Refused to load {source} from {path}: the file asks for more '
            'than tensors and plain values, so it was not unpickled and '
            'nothing in it ran. ImageNet weights (plain state dicts) and '
            'Runner checkpoints never do: the file was altered or is not the '
            f'one the URL names. Delete it and fetch it again (see '
            f'{PREFETCH_DOC}). Refused: {_refusal_reason(exc)}') from exc


def _refusal_reason(exc: Exception) -> str:
    """What the restricted unpickler refused, without PyTorch's advice to
    load unrestricted or to allow-list the refused name."""
    kept = []
    for line in str(exc).splitlines():
        line = line.split('WeightsUnpickler error:')[-1].strip()
        if line and not any(
                word in line for word in ('weights_only', 'safe_globals',
                                          'Check the documentation')):
            kept.append(line)
    return ' '.join(kept) or type(exc).__name__


def _is_single_file_zip(path: str) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
    return len(members) == 1 and not members[0].is_dir()


def _fetch(url: str, model_dir: Optional[str]) -> str:
    """The local file of ``url`` in the torch hub cache (downloaded when
    absent), with an error that says how to pre-fetch it."""
    cache_dir = model_dir or checkpoint_cache_dir()
    try:
        return resolve_checkpoint(url, cache_dir=cache_dir)
    except CheckpointDownloadError as exc:
        name = osp.basename(urlparse(url).path)
        raise CheckpointDownloadError(
            f'The weights {url} are not in {cache_dir} and could not be '
            f'downloaded ({exc.__cause__ or exc}). On a machine with network '
            f'access, pre-fetch {name} into $TORCH_HOME/hub/checkpoints/ '
            f'(here: {cache_dir}); see {PREFETCH_DOC}. A file there is used '
            'without network access.') from exc


def load_from_http(filename: str,
                   map_location: Any = None,
                   model_dir: Optional[str] = None) -> Any:
    """``http://`` and ``https://`` checkpoints: the cached file of torch
    hub (downloaded once, on rank 0 first as in mmengine), loaded with
    ``weights_only=True``.

    Args:
        filename (str): The URL.
        map_location: As for :func:`torch.load`.
        model_dir (str, optional): Download folder; defaults to
            ``<torch hub dir>/checkpoints``, torch hub's own.

    Returns:
        The loaded object (a state dict for ImageNet weights).
    """
    rank, world_size = get_dist_info()
    if rank == 0:
        checkpoint = _torch_load(
            _fetch(filename, model_dir), map_location, filename)
    if world_size > 1:
        torch.distributed.barrier()
        if rank > 0:
            checkpoint = _torch_load(
                _fetch(filename, model_dir), map_location, filename)
    return checkpoint


def load_from_torchvision(filename: str, map_location: Any = None) -> Any:
    """``torchvision://NAME`` (and the deprecated ``modelzoo://NAME``): the
    URL of torchvision's weights ``NAME`` as mmengine resolves it
    (``resnet50``, ``resnet50.imagenet1k_v1``, ...), then
    :func:`load_from_http`."""
    model_urls = get_torchvision_models()
    if filename.startswith('modelzoo://'):
        print_log(
            'The URL scheme of "modelzoo://" is deprecated, please '
            'use "torchvision://" instead',
            logger='current',
            level=logging.WARNING)
        model_name = filename[len('modelzoo://'):]
    else:
        model_name = filename[len('torchvision://'):]
    return load_from_http(model_urls[model_name], map_location=map_location)


def load_from_openmmlab(filename: str, map_location: Any = None) -> Any:
    """``open-mmlab://NAME`` / ``openmmlab://NAME``: the URL (or file in the
    mmengine home folder) that mmengine's ``hub/openmmlab.json`` lists for
    ``NAME``, after its ``deprecated.json`` renames."""
    prefix = ('open-mmlab://'
              if filename.startswith('open-mmlab://') else 'openmmlab://')
    model_name = filename[len(prefix):]
    model_urls = get_external_models()
    deprecated = get_deprecated_model_names()
    if model_name in deprecated:
        print_log(
            f'{prefix}{model_name} is deprecated in favor '
            f'of {prefix}{deprecated[model_name]}',
            logger='current',
            level=logging.WARNING)
        model_name = deprecated[model_name]
    model_url = model_urls[model_name]
    if is_url(model_url):
        return load_from_http(model_url, map_location=map_location)
    path = osp.join(_get_mmengine_home(), model_url)
    if not osp.isfile(path):
        raise FileNotFoundError(f'{path} can not be found.')
    return _torch_load(path, map_location, filename)


def load_from_mmcls(filename: str, map_location: Any = None) -> Any:
    """``mmcls://NAME``: the URL of mmengine's ``hub/mmcls.json``; returns
    ``dict(state_dict=...)`` with the backbone's keys, as mmengine does."""
    model_urls = get_mmcls_models()
    model_name = filename[len('mmcls://'):]
    checkpoint = load_from_http(
        model_urls[model_name], map_location=map_location)
    return _process_mmcls_checkpoint(checkpoint)


#: Scheme prefix -> loader, for every scheme mmengine reads through torch
#: hub. The function names are mmengine's, so CheckpointLoader's log line
#: ("Loads checkpoint by torchvision backend ...") stays the same.
SAFE_URL_LOADERS: Dict[str, Callable] = {
    'http://': load_from_http,
    'https://': load_from_http,
    'torchvision://': load_from_torchvision,
    'modelzoo://': load_from_torchvision,
    'open-mmlab://': load_from_openmmlab,
    'openmmlab://': load_from_openmmlab,
    'mmcls://': load_from_mmcls,
}


def install_safe_url_loaders() -> None:
    """Make :class:`~mmengine.runner.CheckpointLoader` use the loaders of
    this module for every URL scheme in :data:`SAFE_URL_LOADERS`.

    Calling it again changes nothing.
    """
    for prefix, loader in SAFE_URL_LOADERS.items():
        # CheckpointLoader keeps one loader per prefix string (a plain
        # dict, not an mmengine Registry of modules); ``force=True`` is how
        # its API replaces the loader mmengine registered for the same
        # prefix. The prefixes are mmengine's own strings, so the
        # longest-prefix-first order of ``_schemes`` is unchanged and these
        # loaders are the ones picked for them.
        CheckpointLoader.register_scheme(
            prefixes=prefix, loader=loader, force=True)
