"""Converting the Sparse R-CNN authors' detectron2 checkpoints.

The authors' released models (PeizeSun/SparseR-CNN, R50/R101 with 100/300
proposals) are detectron2 checkpoints: ``{'model': state_dict, ...}`` as a
``.pth`` (``torch.save``) or a ``.pkl`` (a pickle of NumPy arrays, possibly
with ``__author__`` / ``matching_heuristics`` keys). Their parameter names
map one to one onto this package's model (ResNet + FPN + EmbeddingRPNHead +
SparseRoIHead/DIIHead):

- ``init_proposal_boxes`` / ``init_proposal_features`` ->
  ``rpn_head.init_proposal_bboxes`` / ``rpn_head.init_proposal_features``;
- ``backbone.bottom_up.stem.conv1[.norm]`` -> ``backbone.conv1`` / ``bn1``;
- ``backbone.bottom_up.res{k}.{b}.conv{j}[.norm]`` ->
  ``backbone.layer{k-1}.{b}.conv{j}`` / ``bn{j}``, ``shortcut[.norm]`` ->
  ``downsample.0`` / ``downsample.1``;
- ``backbone.fpn_lateral{k}`` / ``fpn_output{k}`` ->
  ``neck.lateral_convs.{k-2}.conv`` / ``neck.fpn_convs.{k-2}.conv``;
- ``head.head_series.{i}.X`` -> ``roi_head.bbox_head.{i}.Y`` with X -> Y:
  ``self_attn`` -> ``attention.attn``; ``norm1``, ``norm2``, ``norm3`` ->
  ``attention_norm``, ``instance_interactive_conv_norm``, ``ffn_norm``;
  ``inst_interact.{dynamic_layer, norm1, norm2, out_layer, norm3}`` ->
  ``instance_interactive_conv.{dynamic_layer, norm_in, norm_out, fc_layer,
  fc_norm}``; ``linear1`` / ``linear2`` -> ``ffn.layers.0.0`` /
  ``ffn.layers.1``; ``cls_module.{j}`` / ``reg_module.{j}`` -> ``cls_fcs.{j}``
  / ``reg_fcs.{j}``; ``class_logits`` / ``bboxes_delta`` -> ``fc_cls`` /
  ``fc_reg``.

The backbone's FrozenBatchNorm has the same four tensors as ``BatchNorm2d``
(``weight``, ``bias``, ``running_mean``, ``running_var``, eps 1e-5) but no
``num_batches_tracked``; the converter adds that counter (0, which an
``eval()``-mode or ``norm_eval`` BatchNorm never reads) and reports how many
it added. The authors fine-tune torchvision's ImageNet ResNets with RGB
input and torchvision's mean/std, which are also this package's zoo
settings, so no weight is permuted.
"""
import os
import os.path as osp
import re
import tempfile
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from .safe_pickle import load_numpy_pickle

#: ResNet depth from the number of blocks in res2..res5.
RESNET_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
#: FrozenBatchNorm's eps in detectron2 (and BatchNorm2d's default).
FROZEN_BN_EPS = 1e-5
#: Top-level keys of a detectron2 checkpoint that hold training state, not
#: weights: reported, not converted.
TRAINING_STATE_KEYS = ('optimizer', 'scheduler', 'iteration', 'trainer')
#: Top-level keys of detectron2's ``.pkl`` files that describe the file.
PKL_INFO_KEYS = ('__author__', 'matching_heuristics')

_NORM_TENSORS = ('weight', 'bias', 'running_mean', 'running_var')
_HEAD_RULES = [
    (r'self_attn\.(in_proj_weight|in_proj_bias)', r'attention.attn.\1'),
    (r'self_attn\.out_proj\.(weight|bias)', r'attention.attn.out_proj.\1'),
    (r'norm1\.(weight|bias)', r'attention_norm.\1'),
    (r'norm2\.(weight|bias)', r'instance_interactive_conv_norm.\1'),
    (r'norm3\.(weight|bias)', r'ffn_norm.\1'),
    (r'inst_interact\.dynamic_layer\.(weight|bias)',
     r'instance_interactive_conv.dynamic_layer.\1'),
    (r'inst_interact\.norm1\.(weight|bias)',
     r'instance_interactive_conv.norm_in.\1'),
    (r'inst_interact\.norm2\.(weight|bias)',
     r'instance_interactive_conv.norm_out.\1'),
    (r'inst_interact\.out_layer\.(weight|bias)',
     r'instance_interactive_conv.fc_layer.\1'),
    (r'inst_interact\.norm3\.(weight|bias)',
     r'instance_interactive_conv.fc_norm.\1'),
    (r'linear1\.(weight|bias)', r'ffn.layers.0.0.\1'),
    (r'linear2\.(weight|bias)', r'ffn.layers.1.\1'),
    (r'cls_module\.(\d+)\.(weight|bias)', r'cls_fcs.\1.\2'),
    (r'reg_module\.(\d+)\.(weight|bias)', r'reg_fcs.\1.\2'),
    (r'class_logits\.(weight|bias)', r'fc_cls.\1'),
    (r'bboxes_delta\.(weight|bias)', r'fc_reg.\1'),
]
_HEAD_RULES = [(re.compile(p + '$'), r) for p, r in _HEAD_RULES]


class CheckpointConversionError(ValueError):
    """The file is not a convertible authors' checkpoint; the message names
    the file and the offending keys."""


def map_d2_key(key: str) -> Optional[str]:
    """This package's name for one authors' parameter, or None if unknown.

    Args:
        key (str): A detectron2 state-dict key, e.g.
            ``head.head_series.3.inst_interact.norm1.weight``.
    """
    if key in ('init_proposal_boxes.weight', 'init_proposal_features.weight'):
        return 'rpn_head.' + key.replace('_boxes', '_bboxes')
    m = re.match(r'head\.head_series\.(\d+)\.(.+)$', key)
    if m:
        for pattern, repl in _HEAD_RULES:
            if pattern.match(m.group(2)):
                return (f'roi_head.bbox_head.{m.group(1)}.' +
                        pattern.sub(repl, m.group(2)))
        return None
    m = re.match(r'backbone\.fpn_(lateral|output)([2-5])\.(weight|bias)$', key)
    if m:
        convs = 'lateral_convs' if m.group(1) == 'lateral' else 'fpn_convs'
        return f'neck.{convs}.{int(m.group(2)) - 2}.conv.{m.group(3)}'
    norm = '|'.join(_NORM_TENSORS + ('num_batches_tracked', ))
    m = re.match(rf'backbone\.bottom_up\.stem\.conv1\.norm\.({norm})$', key)
    if m:
        return f'backbone.bn1.{m.group(1)}'
    if key == 'backbone.bottom_up.stem.conv1.weight':
        return 'backbone.conv1.weight'
    m = re.match(
        r'backbone\.bottom_up\.res([2-5])\.(\d+)\.'
        rf'(conv[1-3]|shortcut)(?:\.(norm))?\.({norm}|weight)$', key)
    if not m:
        return None
    stage, block, conv, is_norm, tensor = m.groups()
    if not is_norm and tensor != 'weight':  # convs before a norm: no bias
        return None
    layer = f'backbone.layer{int(stage) - 1}.{block}.'
    if conv == 'shortcut':
        return layer + f'downsample.{1 if is_norm else 0}.{tensor}'
    return layer + (f'bn{conv[-1]}.' if is_norm else f'{conv}.') + tensor


def expected_d2_keys(depth: int, num_stages: int, num_cls_fcs: int,
                     num_reg_fcs: int) -> List[str]:
    """Every key of the authors' model with this architecture.

    Args:
        depth (int): ResNet depth, 50 or 101.
        num_stages (int): Head stages (``head_series``), 6 in the release.
        num_cls_fcs (int): Hidden layers of the class branch (NUM_CLS).
        num_reg_fcs (int): Hidden layers of the box branch (NUM_REG).
    """
    keys = ['init_proposal_boxes.weight', 'init_proposal_features.weight']
    bottom = 'backbone.bottom_up.'
    keys.append(bottom + 'stem.conv1.weight')
    keys += [bottom + f'stem.conv1.norm.{t}' for t in _NORM_TENSORS]
    for stage, blocks in zip(range(2, 6), RESNET_BLOCKS[depth]):
        for block in range(blocks):
            convs = ['conv1', 'conv2', 'conv3'] + (['shortcut']
                                                   if block == 0 else [])
            for conv in convs:
                prefix = f'{bottom}res{stage}.{block}.{conv}.'
                keys.append(prefix + 'weight')
                keys += [prefix + f'norm.{t}' for t in _NORM_TENSORS]
    for level in range(2, 6):
        for kind in ('lateral', 'output'):
            keys += [f'backbone.fpn_{kind}{level}.{t}'
                     for t in ('weight', 'bias')]
    wb = ('weight', 'bias')
    for i in range(num_stages):
        p = f'head.head_series.{i}.'
        keys += [p + 'self_attn.in_proj_weight', p + 'self_attn.in_proj_bias']
        keys += [p + f'self_attn.out_proj.{t}' for t in wb]
        for name in ('norm1', 'norm2', 'norm3', 'linear1', 'linear2',
                     'inst_interact.dynamic_layer', 'inst_interact.norm1',
                     'inst_interact.norm2', 'inst_interact.out_layer',
                     'inst_interact.norm3', 'class_logits', 'bboxes_delta'):
            keys += [p + f'{name}.{t}' for t in wb]
        for branch, num in (('cls_module', num_cls_fcs),
                            ('reg_module', num_reg_fcs)):
            for j in range(num):  # [Linear(no bias), LayerNorm, ReLU]
                keys.append(p + f'{branch}.{3 * j}.weight')
                keys += [p + f'{branch}.{3 * j + 1}.{t}' for t in wb]
    return keys


def _count(keys, pattern: str) -> int:
    """1 + the largest integer captured by ``pattern`` in ``keys``, or 0."""
    found = [int(m.group(1)) for m in map(re.compile(pattern).match, keys)
             if m]
    return max(found) + 1 if found else 0


def infer_d2_architecture(keys) -> Dict[str, int]:
    """``depth``, ``num_stages``, ``num_cls_fcs``, ``num_reg_fcs`` of an
    authors' state dict, from its keys.

    Raises:
        CheckpointConversionError: The block counts are not ResNet-50/101's.
    """
    blocks = tuple(
        _count(keys, rf'backbone\.bottom_up\.res{s}\.(\d+)\.')
        for s in range(2, 6))
    depths = [d for d, b in RESNET_BLOCKS.items() if b == blocks]
    if not depths:
        raise CheckpointConversionError(
            f'res2-res5 have {blocks} blocks; only ResNet-50 '
            f'{RESNET_BLOCKS[50]} and ResNet-101 {RESNET_BLOCKS[101]} '
            'checkpoints of the authors are supported')
    head = r'head\.head_series\.\d+\.'
    # Branch modules are [Linear, LayerNorm, ReLU] x n: the last index with
    # parameters is 3n - 2.
    return dict(
        depth=depths[0],
        num_stages=_count(keys, r'head\.head_series\.(\d+)\.'),
        num_cls_fcs=(_count(keys, head + r'cls_module\.(\d+)\.') + 1) // 3,
        num_reg_fcs=(_count(keys, head + r'reg_module\.(\d+)\.') + 1) // 3)


def _to_tensor(key: str, value, source: str) -> torch.Tensor:
    """A tensor from a checkpoint value (tensor or numeric NumPy array)."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, np.ndarray) and value.dtype.kind in 'biuf':
        return torch.from_numpy(np.ascontiguousarray(value).copy())
    raise CheckpointConversionError(
        f'{source}: {key} is a {type(value).__name__}'
        f'{" of " + str(value.dtype) if isinstance(value, np.ndarray) else ""}'
        ', not a numeric tensor or array')


def _frozen_bn_versions(model: dict) -> Dict[str, int]:
    """FrozenBatchNorm module prefixes whose saved version is below 3 (whose
    ``running_var`` does not include eps), from the state dict's
    ``_metadata`` (absent from ``.pkl`` files)."""
    meta = getattr(model, '_metadata', None) or {}
    old = {}
    for prefix, info in meta.items():
        version = info.get('version') if isinstance(info, dict) else None
        if (prefix.startswith('backbone.bottom_up.') and
                prefix.endswith('norm') and version is not None and
                version < 3):
            old[prefix] = version
    return old


def convert_d2_state_dict(model: dict, source: str = 'checkpoint'
                          ) -> Tuple['OrderedDict[str, torch.Tensor]', dict]:
    """Map the authors' state dict onto this package's names.

    Args:
        model (dict): The ``'model'`` entry of an authors' checkpoint
            (tensors or NumPy arrays).
        source (str): File name, for the messages.

    Returns:
        tuple: the converted state dict (tensors, this package's order of
        backbone, neck, rpn_head, roi_head) and a report dict with
        ``architecture``, ``num_converted``, ``added`` (the
        ``num_batches_tracked`` counters) and ``frozen_bn_upgraded``.

    Raises:
        CheckpointConversionError: Unknown keys (no mapping), missing keys
            (expected for the inferred architecture) or non-numeric values;
            the message lists them.
    """
    keys = list(model)
    unknown = sorted(k for k in keys if map_d2_key(k) is None)
    arch = infer_d2_architecture(keys)
    missing = sorted(set(expected_d2_keys(**arch)) - set(keys))
    problems = []
    if unknown:
        problems.append(f'{len(unknown)} unknown key(s) (no counterpart in '
                        'this package\'s model): ' + ', '.join(unknown))
    if missing:
        problems.append(f'{len(missing)} missing key(s) (expected in the '
                        'authors\' model with ' + ', '.join(
                            f'{k}={v}' for k, v in arch.items()) + '): ' +
                        ', '.join(missing))
    if problems:
        raise CheckpointConversionError(f'{source}: ' + '; '.join(problems))

    old_bn = _frozen_bn_versions(model)
    converted = {}
    for key in keys:
        tensor = _to_tensor(key, model[key], source)
        norm_prefix = key.rsplit('.', 1)[0]
        if key.endswith('.running_var') and norm_prefix in old_bn:
            tensor = tensor - FROZEN_BN_EPS
        converted[map_d2_key(key)] = tensor
    added = []
    for key in list(converted):
        if key.startswith('backbone.') and key.endswith('.running_mean'):
            counter = key[:-len('running_mean')] + 'num_batches_tracked'
            if counter not in converted:
                converted[counter] = torch.tensor(0, dtype=torch.long)
                added.append(counter)
    order = ('backbone.', 'neck.', 'rpn_head.', 'roi_head.')
    state_dict = OrderedDict(
        sorted(converted.items(),
               key=lambda kv: next(i for i, p in enumerate(order)
                                   if kv[0].startswith(p))))
    report = dict(
        architecture=arch,
        num_converted=len(keys),
        added=added,
        frozen_bn_upgraded=sorted(old_bn))
    return state_dict, report


def load_d2_checkpoint(path: str) -> Tuple[dict, dict]:
    """Read an authors' checkpoint without running code from it.

    ``.pth``: ``torch.load(weights_only=True)``; ``.pkl``: a pickle of
    NumPy arrays read by :func:`~.safe_pickle.load_numpy_pickle`.

    Args:
        path (str): The checkpoint.

    Returns:
        tuple: the ``'model'`` state dict and the other top-level entries.

    Raises:
        CheckpointConversionError: Unknown extension, no ``'model'`` entry
            or an unknown top-level key.
        UnsafePickleError: A ``.pkl`` that asks for a non-NumPy global.
    """
    ext = osp.splitext(path)[1].lower()
    if ext == '.pkl':
        data = load_numpy_pickle(path)
    elif ext in ('.pth', '.pt'):
        try:
            data = torch.load(path, map_location='cpu', weights_only=True)
        except Exception as err:
            raise CheckpointConversionError(
                f'{path}: torch.load(weights_only=True) refused the file '
                f'({type(err).__name__}: {err}); it is not a plain weights '
                'checkpoint') from err
    else:
        raise CheckpointConversionError(
            f'{path}: unknown extension {ext!r}; expected the authors\' '
            '.pth (torch.save) or .pkl (pickle of NumPy arrays)')
    if not isinstance(data, dict) or 'model' not in data:
        found = sorted(map(str, data)) if isinstance(data, dict) else [
            type(data).__name__]
        hint = (' (Caffe2 "blobs" layout is not supported)'
                if isinstance(data, dict) and 'blobs' in data else '')
        raise CheckpointConversionError(
            f'{path}: expected a detectron2 checkpoint {{"model": ...}}, '
            f'found {found}{hint}')
    extra = {k: v for k, v in data.items() if k != 'model'}
    unknown = sorted(
        str(k) for k in extra if k not in TRAINING_STATE_KEYS + PKL_INFO_KEYS)
    if unknown:
        raise CheckpointConversionError(
            f'{path}: unknown top-level key(s) {unknown}; known are "model", '
            f'{list(TRAINING_STATE_KEYS + PKL_INFO_KEYS)}')
    if not isinstance(data['model'], dict):
        raise CheckpointConversionError(
            f'{path}: "model" is a {type(data["model"]).__name__}, not a '
            'state dict')
    return data['model'], extra


def save_checkpoint_atomic(checkpoint: dict, path: str) -> None:
    """``torch.save`` to a temporary file in the target's folder, then
    ``os.replace``: an existing ``path`` is never left half-written."""
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix='.' + osp.basename(path) + '.', suffix='.tmp', dir=folder)
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def convert_d2_checkpoint(src: str, dst: str) -> dict:
    """Convert an authors' checkpoint file to this package's format.

    Writes ``{'state_dict': ..., 'meta': ...}`` to ``dst`` atomically. The
    training state (optimizer, scheduler) is not converted; it is listed in
    the report and in ``meta['not_converted']`` (``iteration`` goes to
    ``meta['iteration']``).

    Args:
        src (str): The authors' ``.pth`` or ``.pkl``.
        dst (str): Output ``.pth``.

    Returns:
        dict: The report of :func:`convert_d2_state_dict` plus ``src``,
        ``dst``, ``format`` and ``not_converted``.
    """
    model, extra = load_d2_checkpoint(src)
    state_dict, report = convert_d2_state_dict(model, source=src)
    not_converted = sorted(
        k for k in extra if k in TRAINING_STATE_KEYS and k != 'iteration')
    meta = dict(
        converted_from=osp.basename(src),
        source_format='detectron2 ' + osp.splitext(src)[1].lstrip('.'),
        architecture=report['architecture'],
        added_keys=report['added'],
        frozen_bn_upgraded=report['frozen_bn_upgraded'],
        not_converted=not_converted)
    for key in PKL_INFO_KEYS:
        if key in extra:
            meta[key] = extra[key] if isinstance(
                extra[key], (str, bool, int)) else str(extra[key])
    if 'iteration' in extra:
        meta['iteration'] = int(extra['iteration'])
    save_checkpoint_atomic(dict(state_dict=state_dict, meta=meta), dst)
    report.update(src=src, dst=dst, format=meta['source_format'],
                  not_converted=not_converted)
    return report


def check_strict_load(checkpoint: str, config: str) -> int:
    """Build the model of ``config`` (no pretrained download) and load the
    converted ``checkpoint`` into it with ``strict=True``.

    Args:
        checkpoint (str): A converted checkpoint.
        config (str): The matching config, e.g.
            ``configs/authors/sparse_rcnn_r50_fpn_100pro_3x_d2.py``.

    Returns:
        int: The number of tensors loaded.

    Raises:
        RuntimeError: From ``load_state_dict``: missing, unexpected or
            mis-shaped keys.
    """
    from mmengine.config import Config

    from mmdet_sparse.registry import MODELS
    from .setup_env import register_all_modules

    register_all_modules(init_default_scope=False)
    cfg = Config.fromfile(config)
    cfg.model.backbone.init_cfg = None
    cfg.model['_scope_'] = 'mmdet_sparse'
    model = MODELS.build(cfg.model)
    state_dict = torch.load(
        checkpoint, map_location='cpu', weights_only=True)['state_dict']
    model.load_state_dict(state_dict, strict=True)
    return len(state_dict)
