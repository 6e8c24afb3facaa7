"""ViT-Adapter backbone: shapes, window attention, parameter counts and
loading of plain-ViT (DeiT/timm layout) checkpoints."""
import torch
import torch.nn.functional as F

from mmdet_sparse.models.backbones import ViTAdapter
from mmdet_sparse.models.backbones.vit_layers import Attention
from mmdet_sparse.registry import MODELS
from mmdet_sparse.utils import register_all_modules

# ViT-Adapter-S (DeiT-S) backbone, and FPN(384 x 4 -> 256): 27,494,288 +
# 2,754,560 = 30,248,848 parameters; with the Sparse R-CNN head for 300
# proposals (79.49M) the detector has 109.7M.
ADAPTER_S_PARAMS = 27_494_288
FPN_PARAMS = 2_754_560

TINY = dict(
    pretrain_img_size=64,
    embed_dims=64,
    depth=4,
    num_heads=2,
    drop_path_rate=0.1,
    window_size=3,
    global_attn_indexes=(1, 3),
    interaction_indexes=((0, 0), (1, 1), (2, 2), (3, 3)),
    conv_inplanes=16,
    deform_num_heads=2,
    num_extra_extractors=1)


def _num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _adapter_s_with_fpn():
    register_all_modules()
    backbone = ViTAdapter()
    neck = MODELS.build(
        dict(
            type='FPN',
            in_channels=[384] * 4,
            out_channels=256,
            add_extra_convs='on_output',
            num_outs=4))
    return backbone, neck


def test_param_counts_and_forward_backward():
    backbone, neck = _adapter_s_with_fpn()
    n_backbone, n_neck = _num_params(backbone), _num_params(neck)
    assert n_backbone == ADAPTER_S_PARAMS
    assert n_neck == FPN_PARAMS
    # full detector within 1% of 109.7M given the 79.49M head
    assert abs(n_backbone + n_neck - 30.25e6) < 1.1e6

    backbone.init_weights()
    x = torch.randn(1, 3, 64, 96)
    feats = backbone(x)
    assert [f.shape for f in feats] == [(1, 384, 64 // s, 96 // s)
                                       for s in backbone.strides]
    assert backbone.strides == (4, 8, 16, 32)
    outs = neck(feats)
    assert [o.shape for o in outs] == [(1, 256, 64 // s, 96 // s)
                                      for s in (4, 8, 16, 32)]
    sum(o.mean() for o in outs).backward()
    # every parameter takes part (no DDP unused-parameter errors)
    no_grad = [n for n, p in backbone.named_parameters() if p.grad is None]
    assert no_grad == []


def test_tiny_adapter_shapes_and_eval():
    model = ViTAdapter(**TINY)
    model.init_weights()
    # 96 x 160 gives a 6 x 10 token grid: window 3 without padding;
    # 64 x 64 gives 4 x 4: padded windows.
    for h, w in ((96, 160), (64, 64)):
        model.train()
        feats = model(torch.randn(2, 3, h, w))
        assert [f.shape for f in feats] == [(2, 64, h // s, w // s)
                                           for s in (4, 8, 16, 32)]
        model.eval()
        with torch.no_grad():
            assert model(torch.randn(1, 3, h, w))[0].shape == (1, 64, h // 4,
                                                                w // 4)


def test_gradient_checkpointing_matches():
    cfg = dict(TINY, drop_path_rate=0.)
    torch.manual_seed(0)
    plain = ViTAdapter(**cfg)
    plain.init_weights()
    for interaction in plain.interactions:  # let the injectors matter
        torch.nn.init.constant_(interaction.injector.gamma, 0.5)
    ckpt = ViTAdapter(with_cp=True, **cfg)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 96)
    outs = [model(x) for model in (plain, ckpt)]
    for a, b in zip(*outs):
        assert torch.allclose(a, b, atol=1e-5)
    for out in outs:
        sum(o.sum() for o in out).backward()
    for p, q in zip(plain.parameters(), ckpt.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-4)


def test_window_attention_matches_global_when_window_covers_grid():
    torch.manual_seed(0)
    glob = Attention(32, 4)
    win = Attention(32, 4, window_size=7)  # one 7x7 window, padding masked
    win.load_state_dict(glob.state_dict())
    x = torch.randn(2, 4 * 5, 32)
    assert torch.allclose(glob(x, 4, 5), win(x, 4, 5), atol=1e-5)
    # smaller windows attend locally only: differs from global attention
    small = Attention(32, 4, window_size=2)
    small.load_state_dict(glob.state_dict())
    out = small(x, 4, 5)
    assert out.shape == x.shape
    assert not torch.allclose(out, glob(x, 4, 5), atol=1e-3)


def _deit_like_checkpoint(path, dims=64, depth=4, grid=7):
    """A DeiT-format file: {'model': timm ViT state dict}, random values."""
    sd = {
        'cls_token': torch.randn(1, 1, dims),
        'pos_embed': torch.randn(1, 1 + grid * grid, dims),
        'patch_embed.proj.weight': torch.randn(dims, 3, 16, 16),
        'patch_embed.proj.bias': torch.randn(dims),
        'norm.weight': torch.randn(dims),
        'norm.bias': torch.randn(dims),
        'head.weight': torch.randn(1000, dims),
        'head.bias': torch.randn(1000),
    }
    shapes = {
        'norm1.weight': (dims, ), 'norm1.bias': (dims, ),
        'attn.qkv.weight': (3 * dims, dims), 'attn.qkv.bias': (3 * dims, ),
        'attn.proj.weight': (dims, dims), 'attn.proj.bias': (dims, ),
        'norm2.weight': (dims, ), 'norm2.bias': (dims, ),
        'mlp.fc1.weight': (4 * dims, dims), 'mlp.fc1.bias': (4 * dims, ),
        'mlp.fc2.weight': (dims, 4 * dims), 'mlp.fc2.bias': (dims, ),
    }
    for i in range(depth):
        for name, shape in shapes.items():
            sd[f'blocks.{i}.{name}'] = torch.randn(shape)
    torch.save({'model': sd}, path)
    return sd


def test_pretrained_deit_checkpoint(tmp_path):
    register_all_modules()
    path = str(tmp_path / 'deit_tiny_random.pth')
    sd = _deit_like_checkpoint(path)
    model = MODELS.build(
        dict(
            type='ViTAdapter',
            init_cfg=dict(type='Pretrained', checkpoint=path),
            **TINY))
    model.init_weights()

    assert torch.equal(model.blocks[2].attn.qkv.weight,
                       sd['blocks.2.attn.qkv.weight'])
    assert torch.equal(model.patch_embed.proj.weight,
                       sd['patch_embed.proj.weight'])
    # class token dropped, 7x7 grid resized bicubically to the 4x4 grid
    grid = sd['pos_embed'][:, 1:].reshape(1, 7, 7, 64).permute(0, 3, 1, 2)
    expected = F.interpolate(grid, size=(4, 4), mode='bicubic',
                             align_corners=False).flatten(2).transpose(1, 2)
    assert torch.allclose(model.pos_embed, expected)
    assert torch.all(model.interactions[0].injector.gamma == 0)

    # an incomplete file with a stray key: both are reported
    del sd['blocks.3.mlp.fc2.bias']
    sd['foo.bar'] = torch.zeros(3)
    sd['blocks.0.norm1.weight'] = torch.zeros(5)
    torch.save({'model': sd}, path)
    report = model.load_vit_checkpoint(path)
    assert set(report['missing']) == {
        'blocks.3.mlp.fc2.bias', 'blocks.0.norm1.weight'
    }
    assert set(report['unexpected']) == {
        'foo.bar', 'blocks.0.norm1.weight (shape (5,) vs (64,))'
    }


def test_export_path_of_deformable_attention_matches():
    """The deformable attention's export path (Python-int level shapes)
    gives mmcv's CPU values."""
    from unittest import mock
    torch.manual_seed(0)
    model = ViTAdapter(**dict(TINY, drop_path_rate=0.)).eval()
    model.init_weights()
    for interaction in model.interactions:  # let the injectors matter
        torch.nn.init.constant_(interaction.injector.gamma, 0.5)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        ref = model(x)
        with mock.patch('mmdet_sparse.models.backbones.adapter_modules.'
                        'is_exporting', return_value=True) as flag:
            out = model(x)
    assert flag.called
    for a, b in zip(out, ref):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
