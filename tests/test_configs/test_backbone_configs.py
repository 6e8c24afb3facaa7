"""The backbone-variant configs: each builds its whole detector (pretrained
weights off), the backbone feeds the FPN the channels/strides it expects, and
a training step (loss + backward) runs on a tiny image."""
import os

import pytest
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.optim import build_optim_wrapper

from mmdet.testing import demo_mm_inputs
from mmdet_sparse.registry import MODELS
from mmdet_sparse.utils import register_all_modules

CONFIG_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(__file__))), 'configs')
CONFIGS = [
    'sparse_rcnn_swin_t_fpn_3x_coco.py',
    'sparse_rcnn_pvtv2_b2_fpn_3x_coco.py',
    'sparse_rcnn_deit_adapter_small_fpn_3x_coco.py',
    'sparse_rcnn_timm_convnext_tiny_fpn_3x_coco.py',
    'sparse_rcnn_timm_resnet50_fpn_3x_coco.py',
    # (ResNeXt-101 without DCN: built and counted below)
    'sparse_rcnn_x101_32x4d_dcn_fpn_300pro_crop_3x_coco.py',
]
# ViT-Adapter-S (27,503,888, the published checkpoint's layout) + FPN
# (2,754,560) + Sparse R-CNN head with 300 proposals (79,490,472): 110M as
# published.
ADAPTER_MODEL_PARAMS = 109_748_920

def _build(name: str, num_proposals: int = None):
    """(config, detector) with pretrained weights off and SyncBN -> BN;
    ``num_proposals`` overrides the config's (fewer is faster)."""
    cfg = Config.fromfile(os.path.join(CONFIG_DIR, name))
    assert cfg.default_scope == 'mmdet_sparse'
    cfg.model.backbone.init_cfg = None  # no pretrained files in tests
    if num_proposals:
        cfg.model.rpn_head.num_proposals = num_proposals
    register_all_modules()
    return cfg, revert_sync_batchnorm(MODELS.build(cfg.model))


def _param_groups(model, cfg) -> dict:
    """{parameter name: (lr, weight decay)} of the config's optimiser."""
    names = {id(p): n for n, p in model.named_parameters()}
    optimizer = build_optim_wrapper(model, cfg.optim_wrapper).optimizer
    return {
        names[id(p)]: (group['lr'], group['weight_decay'])
        for group in optimizer.param_groups for p in group['params']
    }


def test_adapter_model_size_and_optimizer():
    cfg, model = _build('sparse_rcnn_deit_adapter_small_fpn_3x_coco.py')
    assert model.rpn_head.num_proposals == 300
    assert sum(p.numel() for p in model.parameters()) == ADAPTER_MODEL_PARAMS

    # published recipe: weight decay by name substrings
    groups = _param_groups(model, cfg)
    assert cfg.optim_wrapper.clip_grad.max_norm == 1
    for name in ('backbone.blocks.0.attn.qkv.weight',
                 'backbone.blocks.0.gamma1', 'backbone.blocks.11.gamma2',
                 'backbone.interactions.0.injector.gamma',
                 'backbone.spm.stem.1.weight',
                 'roi_head.bbox_head.0.cls_fcs.1.weight'):
        assert groups[name] == (1e-4, 0.05), name
    for name in ('backbone.pos_embed', 'backbone.level_embed',
                 'backbone.blocks.0.attn.qkv.bias',
                 'backbone.blocks.0.norm1.weight', 'backbone.norm1.weight',
                 'backbone.interactions.3.extra_extractors.1.ffn_norm.weight',
                 'roi_head.bbox_head.0.attention_norm.weight'):
        assert groups[name] == (1e-4, 0.), name
    lr, wd = groups['rpn_head.init_proposal_features.weight']
    assert lr == pytest.approx(2.5e-5) and wd == pytest.approx(1e-4)

    # published pipeline: ends with a crop to at most 1024 x 1024
    pipeline = cfg.train_dataloader.dataset.pipeline
    assert [t['type'] for t in pipeline[-2:]] == ['RandomCrop',
                                                  'PackDetInputs']
    assert pipeline[-2]['crop_size'] == (1024, 1024)
    assert pipeline[-2]['crop_type'] == 'absolute_range'


def test_swin_optimizer():
    cfg, model = _build('sparse_rcnn_swin_t_fpn_3x_coco.py', num_proposals=8)
    groups = _param_groups(model, cfg)
    table = [n for n in groups if 'relative_position_bias_table' in n]
    assert table and all(groups[n][1] == 0 for n in table)
    assert groups['backbone.stages.0.blocks.0.norm1.weight'][1] == 0
    assert groups['neck.fpn_convs.0.conv.weight'] == (2.5e-5, 1e-4)


@pytest.mark.parametrize('name', CONFIGS)
def test_config_builds_and_trains(name):
    torch.manual_seed(0)
    cfg, model = _build(name, num_proposals=8)
    model.backbone.init_weights()
    if name.startswith('sparse_rcnn_timm'):
        assert list(model.backbone.out_channels) == cfg.model.neck.in_channels
        assert list(model.backbone.strides) == [4, 8, 16, 32]

    packed = demo_mm_inputs(
        batch_size=1, image_shapes=[(3, 128, 160)], num_items=[2],
        num_classes=80)
    data = model.data_preprocessor(packed, training=True)
    model.train()
    feats = model.backbone(data['inputs'])
    assert [f.shape[1] for f in feats] == cfg.model.neck.in_channels
    assert [128 // f.shape[2] for f in feats] == \
        cfg.model.roi_head.bbox_roi_extractor.featmap_strides

    losses = model.loss(data['inputs'], data['data_samples'])
    loss = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.backbone.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)


def _resnext_params(depth_blocks=(3, 4, 23, 3), groups=32, base_width=4,
                    dcn_stages=()) -> int:
    """Parameter count of a ResNeXt (pytorch style, no deep stem) from its
    architecture: convs without bias, BN weight + bias, and with modulated
    DCN a 3x3 offset/mask conv (bias, 3 * 9 outputs) beside each 3x3 conv
    of the given stages."""
    total = 3 * 64 * 49 + 2 * 64  # stem conv + BN
    in_ch = 64
    for stage, blocks in enumerate(depth_blocks):
        planes = 64 * 2**stage
        width = planes * base_width // 64 * groups
        out_ch = planes * 4
        for block in range(blocks):
            total += in_ch * width + 2 * width  # 1x1 reduce
            total += width * (width // groups) * 9 + 2 * width  # 3x3 grouped
            if stage in dcn_stages:
                total += width * 27 * 9 + 27  # offsets and masks
            total += width * out_ch + 2 * out_ch  # 1x1 expand
            if block == 0:
                total += in_ch * out_ch + 2 * out_ch  # downsample
            in_ch = out_ch
    return total


def test_resnext_backbones_match_the_architecture():
    register_all_modules()
    counts = {}
    for name in ('x101_32x4d', 'x101_32x4d_dcn'):
        cfg = Config.fromfile(os.path.join(
            CONFIG_DIR, f'sparse_rcnn_{name}_fpn_300pro_crop_3x_coco.py'))
        assert cfg.model.rpn_head.num_proposals == 300
        backbone = cfg.model.backbone
        assert (backbone.type, backbone.depth, backbone.groups,
                backbone.base_width) == ('ResNeXt', 101, 32, 4)
        assert backbone.init_cfg.checkpoint == \
            'open-mmlab://resnext101_32x4d'
        model = MODELS.build(dict(backbone, init_cfg=None))
        counts[name] = sum(p.numel() for p in model.parameters())
    # DCNv2 replaces the 3x3 convs of stages 2-4, not of stage 1.
    assert backbone.dcn.type == 'DCNv2'
    assert type(model.layer1[0].conv2).__name__ == 'Conv2d'
    for layer in (model.layer2, model.layer3, model.layer4):
        assert all(type(block.conv2).__name__ == 'ModulatedDeformConv2dPack'
                   for block in layer)
    # The formula gives ResNet-50's 23,508,032 for (3, 4, 6, 3), groups 1,
    # width 64; ResNeXt-101 32x4d plus its 1000-class classifier (2,049,000)
    # is the published 44.18M.
    assert _resnext_params((3, 4, 6, 3), 1, 64) == 23_508_032
    assert counts['x101_32x4d'] == _resnext_params() == 42_128_704
    assert counts['x101_32x4d_dcn'] == _resnext_params(dcn_stages=(1, 2, 3))
