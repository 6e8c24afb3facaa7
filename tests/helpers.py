"""Shared builders for the tests: reference/own heads, features, samples."""
import copy
import os
from typing import List, Sequence, Tuple

import torch
from mmengine.config import Config
from mmengine.structures import InstanceData

import mmdet
from mmdet.registry import MODELS as MMDET_MODELS
from mmdet.structures import DetDataSample

import mmdet_sparse
from mmdet_sparse.registry import MODELS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(REPO, 'configs')
MMDET_CONFIG_DIR = os.path.join(
    os.path.dirname(mmdet.__file__), '.mim', 'configs', 'sparse_rcnn')

mmdet_sparse.register_all_modules(init_default_scope=False)


def our_config(name: str = 'sparse_rcnn_r50_fpn_1x_coco.py') -> Config:
    return Config.fromfile(os.path.join(CONFIG_DIR, name))


def mmdet_config(name: str = 'sparse-rcnn_r50_fpn_1x_coco.py') -> Config:
    return Config.fromfile(os.path.join(MMDET_CONFIG_DIR, name))


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
    heads = roi['bbox_head']
    for head in (heads if isinstance(heads, list) else [heads]):
        head['num_classes'] = num_classes
    roi['train_cfg'] = model_cfg['train_cfg']['rcnn']
    roi['test_cfg'] = dict(model_cfg['test_cfg']['rcnn'],
                           max_per_img=num_proposals)
    registry = MODELS if scope == 'mmdet_sparse' else MMDET_MODELS
    return (build_in_scope(rpn, scope, registry),
            build_in_scope(roi, scope, registry))


def head_pair(num_classes: int = 80, num_proposals: int = 100, seed: int = 0):
    """MMDetection's reference heads and ours with identical weights."""
    torch.manual_seed(seed)
    ref_rpn, ref_roi = build_heads(mmdet_config().model, 'mmdet', num_classes,
                                   num_proposals)
    ref_rpn.init_weights()
    ref_roi.init_weights()
    our_rpn, our_roi = build_heads(our_config().model, 'mmdet_sparse',
                                   num_classes, num_proposals)
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


def max_rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """``max|a - b| / max|b|``: the difference relative to the tensor's
    scale (element-wise ratios are meaningless near zero)."""
    a, b = a.detach().double(), b.detach().double()
    scale = b.abs().max().clamp(min=1e-12)
    return ((a - b).abs().max() / scale).item()
