"""Shared builders for the tests: reference/own heads, features, samples."""
import copy
import importlib.util
import os
from typing import List, Sequence, Tuple
from unittest import TestCase

import numpy as np
import torch
from mmengine.config import Config
from mmengine.structures import InstanceData

import mmdet
from mmdet.registry import MODELS as MMDET_MODELS
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks

import mmdet_sparse
from mmdet_sparse.registry import MODELS

REPO = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG_DIR = os.path.join(REPO, 'configs')
MMDET_CONFIG_DIR = os.path.join(
    os.path.dirname(mmdet.__file__), '.mim', 'configs', 'sparse_rcnn')
MMDET_QUERYINST_DIR = os.path.join(
    os.path.dirname(mmdet.__file__), '.mim', 'configs', 'queryinst')
QUERYINST = 'queryinst_r50_fpn_1x_coco.py'

mmdet_sparse.register_all_modules(init_default_scope=False)


def our_config(name: str = 'sparse_rcnn_r50_fpn_1x_coco.py') -> Config:
    return Config.fromfile(os.path.join(CONFIG_DIR, name))


def mmdet_config(name: str = 'sparse-rcnn_r50_fpn_1x_coco.py') -> Config:
    return Config.fromfile(os.path.join(MMDET_CONFIG_DIR, name))


def our_queryinst_config(name: str = QUERYINST) -> Config:
    return Config.fromfile(os.path.join(CONFIG_DIR, 'queryinst', name))


def mmdet_queryinst_config(name: str = QUERYINST) -> Config:
    return Config.fromfile(os.path.join(MMDET_QUERYINST_DIR, name))


def build_in_scope(cfg: dict, scope: str, registry=MODELS):
    """Build ``cfg`` with every nested module resolved in ``scope``."""
    cfg = copy.deepcopy(cfg)
    cfg['_scope_'] = scope
    return registry.build(cfg)


def build_heads(model_cfg: dict, scope: str, num_classes: int,
                num_proposals: int) -> Tuple[torch.nn.Module,
                                             torch.nn.Module]:
    """(rpn_head, roi_head) of a Sparse R-CNN model config, as the detector
    builds them (with its train/test configs)."""
    model_cfg = copy.deepcopy(model_cfg)
    rpn = dict(model_cfg['rpn_head'], num_proposals=num_proposals)
    roi = copy.deepcopy(model_cfg['roi_head'])
    for key in ('bbox_head', 'mask_head'):
        heads = roi.get(key) or []
        for head in (heads if isinstance(heads, list) else [heads]):
            head['num_classes'] = num_classes
    roi['train_cfg'] = model_cfg['train_cfg']['rcnn']
    roi['test_cfg'] = dict(model_cfg['test_cfg']['rcnn'],
                           max_per_img=num_proposals)
    registry = MODELS if scope == 'mmdet_sparse' else MMDET_MODELS
    return (build_in_scope(rpn, scope, registry),
            build_in_scope(roi, scope, registry))


def head_pair(num_classes: int = 80, num_proposals: int = 100, seed: int = 0,
              masks: bool = False, channels: int = 256):
    """MMDetection's reference heads and ours with identical weights
    (Sparse R-CNN, or QueryInst with ``masks``, ``channels`` wide)."""
    torch.manual_seed(seed)
    ref_cfg = mmdet_queryinst_config().model if masks else \
        mmdet_config().model
    our_cfg = our_queryinst_config().model if masks else our_config().model
    if masks and channels != 256:
        ref_cfg = narrow_queryinst(ref_cfg, channels)
        our_cfg = narrow_queryinst(our_cfg, channels)
    ref_rpn, ref_roi = build_heads(ref_cfg, 'mmdet', num_classes,
                                   num_proposals)
    ref_rpn.init_weights()
    ref_roi.init_weights()
    our_rpn, our_roi = build_heads(our_cfg, 'mmdet_sparse', num_classes,
                                   num_proposals)
    our_rpn.load_state_dict(ref_rpn.state_dict(), strict=True)
    our_roi.load_state_dict(ref_roi.state_dict(), strict=True)
    return (ref_rpn, ref_roi), (our_rpn, our_roi)


def fpn_features(img_shapes: Sequence[Tuple[int, int]],
                 channels: int = 256,
                 seed: int = 0,
                 requires_grad: bool = False) -> List[torch.Tensor]:
    """Random P2-P5 features of a batch padded to a multiple of 32."""
    gen = torch.Generator().manual_seed(seed)
    pad_h = max(-(-h // 32) * 32 for h, _ in img_shapes)
    pad_w = max(-(-w // 32) * 32 for _, w in img_shapes)
    feats = []
    for stride in (4, 8, 16, 32):
        f = torch.randn(
            len(img_shapes),
            channels,
            pad_h // stride,
            pad_w // stride,
            generator=gen)
        feats.append(f.requires_grad_(requires_grad))
    return feats


def data_samples(img_shapes: Sequence[Tuple[int, int]],
                 num_gts: Sequence[int],
                 num_classes: int = 80,
                 seed: int = 0,
                 scale_factor: Tuple[float, float] = (1.5, 1.25)
                 ) -> List[DetDataSample]:
    """Data samples with random ground-truth boxes inside each image."""
    gen = torch.Generator().manual_seed(seed)
    samples = []
    for i, ((h, w), n) in enumerate(zip(img_shapes, num_gts)):
        xy = torch.rand(n, 2, generator=gen) * torch.tensor([w, h]) * 0.7
        wh = (torch.rand(n, 2, generator=gen) * 0.5 + 0.05) * torch.tensor(
            [w, h])
        boxes = torch.cat([xy, torch.minimum(xy + wh,
                                             torch.tensor([w, h]) - 1.0)], 1)
        sample = DetDataSample(
            metainfo=dict(
                img_shape=(h, w),
                ori_shape=(round(h / scale_factor[1]),
                           round(w / scale_factor[0])),
                pad_shape=(-(-h // 32) * 32, -(-w // 32) * 32),
                scale_factor=scale_factor,
                img_id=i,
                img_path=f'img_{i}.jpg'))
        sample.gt_instances = InstanceData(
            bboxes=boxes,
            labels=torch.randint(0, num_classes, (n, ), generator=gen))
        samples.append(sample)
    return samples


def narrow_queryinst(model_cfg: dict, channels: int = 32) -> dict:
    """A QueryInst model config with ``channels`` wide heads (the
    architecture unchanged), so that parity tests run in seconds."""
    cfg = copy.deepcopy(model_cfg)
    cfg['rpn_head']['proposal_feature_channel'] = channels
    roi = cfg['roi_head']
    roi['proposal_feature_channel'] = channels
    for key in ('bbox_roi_extractor', 'mask_roi_extractor'):
        roi[key]['out_channels'] = channels
    for key in ('bbox_head', 'mask_head'):
        heads = roi[key]
        for head in (heads if isinstance(heads, list) else [heads]):
            head['in_channels'] = channels
            head['dynamic_conv_cfg'].update(
                in_channels=channels, feat_channels=channels // 4,
                out_channels=channels)
            if key == 'bbox_head':
                head['feedforward_channels'] = 4 * channels
            else:
                head['conv_out_channels'] = channels
    return cfg


def ellipse_masks(boxes: torch.Tensor, height: int, width: int,
                  seed: int = 0) -> BitmapMasks:
    """An ellipse inside each box, with a few random pixels flipped, as
    ``BitmapMasks`` of ``height x width``."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[:height, :width] + 0.5
    masks = np.zeros((len(boxes), height, width), np.uint8)
    for k, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        rx, ry = max((x1 - x0) / 2, 1), max((y1 - y0) / 2, 1)
        inside = ((xs - cx) / rx)**2 + ((ys - cy) / ry)**2 <= 1
        noise = rng.random((height, width)) < 0.05
        masks[k] = inside ^ (noise & (np.abs(xs - cx) < rx)
                             & (np.abs(ys - cy) < ry))
    return BitmapMasks(masks, height, width)


def add_masks(samples: List[DetDataSample], seed: int = 0
              ) -> List[DetDataSample]:
    """Give each sample ``gt_instances.masks`` of the batch's padded
    shape (as ``DetDataPreprocessor(pad_mask=True)`` leaves them)."""
    pad_h = max(s.metainfo['pad_shape'][0] for s in samples)
    pad_w = max(s.metainfo['pad_shape'][1] for s in samples)
    for i, sample in enumerate(samples):
        sample.gt_instances.masks = ellipse_masks(
            sample.gt_instances.bboxes, pad_h, pad_w, seed + i)
    return samples


def max_rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """``max|a - b| / max|b|``: the difference relative to the tensor's
    scale (element-wise ratios are meaningless near zero)."""
    a, b = a.detach().double(), b.detach().double()
    scale = b.abs().max().clamp(min=1e-12)
    return ((a - b).abs().max() / scale).item()


class OneThreadTestCase(TestCase):
    """Runs its tests on one CPU thread (restored afterwards): on a shared
    machine, waiting for busy cores costs more than a second thread gains
    on tiny tensors."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._threads = torch.get_num_threads()
        torch.set_num_threads(1)

    @classmethod
    def tearDownClass(cls):
        torch.set_num_threads(cls._threads)
        super().tearDownClass()


def load_script(*parts: str, name: str = ''):
    """A script of this repository (``parts`` of its path under the root,
    e.g. ``('tools', 'demo.py')``) imported as a module named ``name``
    (default ``script_<file stem>``); its ``if __name__ == '__main__'``
    block does not run."""
    path = os.path.join(REPO, *parts)
    name = name or 'script_' + os.path.splitext(parts[-1])[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
