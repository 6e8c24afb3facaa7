"""ViT-Adapter backbone: the published checkpoint layout loads strictly, the
forward follows the published detection rule (final ViT map added to every
level), parameter counts, gradient checkpointing, and loading of plain-ViT
(DeiT/timm layout) checkpoints."""
import os
import tempfile
from typing import Dict, Tuple
from unittest import TestCase, mock

import torch
import torch.nn.functional as F

from mmdet_sparse.models.backbones import ViTAdapter
from mmdet_sparse.models.backbones.adapter_modules import deform_inputs
from mmdet_sparse.registry import MODELS
from mmdet_sparse.utils import register_all_modules

# ViT-Adapter-S (DeiT-S) backbone: 27,503,888 parameters (the published
# layout below), FPN(384 x 4 -> 256) 2,754,560.
ADAPTER_S_PARAMS = 27_503_888
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


def published_layout(dims: int = 384,
                     depth: int = 12,
                     grid: int = 14,
                     patch: int = 16,
                     inplanes: int = 64,
                     heads: int = 6,
                     points: int = 4,
                     mlp_ratio: int = 4,
                     cffn_ratio: float = 0.25,
                     value_ratio: float = 1.0,
                     stages: int = 4,
                     extra: int = 2) -> Dict[str, Tuple[int, ...]]:
    """Names and shapes of the backbone entries of a published ViT-Adapter
    detection checkpoint (czczup/ViT-Adapter ``detection/``: the
    TIMMVisionTransformer base with layer scale, SpatialPriorModule,
    InteractionBlock with MSDeformAttn, SyncBN output norms), written out
    from their module definitions."""
    layout = {}

    def linear(name, cout, cin):
        layout[f'{name}.weight'] = (cout, cin)
        layout[f'{name}.bias'] = (cout, )

    def norm(name, c, bn=False):
        layout[f'{name}.weight'] = layout[f'{name}.bias'] = (c, )
        if bn:
            layout[f'{name}.running_mean'] = (c, )
            layout[f'{name}.running_var'] = (c, )
            layout[f'{name}.num_batches_tracked'] = ()

    def deform_attn(name, levels):
        vdims = int(dims * value_ratio)
        linear(f'{name}.sampling_offsets', heads * levels * points * 2, dims)
        linear(f'{name}.attention_weights', heads * levels * points, dims)
        linear(f'{name}.value_proj', vdims, dims)
        linear(f'{name}.output_proj', dims, vdims)

    # ViT: pos_embed keeps the class-token slot; layer scales gamma1/gamma2
    layout['pos_embed'] = (1, 1 + grid * grid, dims)
    layout['patch_embed.proj.weight'] = (dims, 3, patch, patch)
    layout['patch_embed.proj.bias'] = (dims, )
    for i in range(depth):
        norm(f'blocks.{i}.norm1', dims)
        linear(f'blocks.{i}.attn.qkv', 3 * dims, dims)
        linear(f'blocks.{i}.attn.proj', dims, dims)
        norm(f'blocks.{i}.norm2', dims)
        linear(f'blocks.{i}.mlp.fc1', mlp_ratio * dims, dims)
        linear(f'blocks.{i}.mlp.fc2', dims, mlp_ratio * dims)
        layout[f'blocks.{i}.gamma1'] = layout[f'blocks.{i}.gamma2'] = (dims, )
    layout['level_embed'] = (3, dims)
    # spatial prior module
    for idx, (cout, cin) in zip((0, 3, 6), ((inplanes, 3),
                                            (inplanes, inplanes),
                                            (inplanes, inplanes))):
        layout[f'spm.stem.{idx}.weight'] = (cout, cin, 3, 3)
        norm(f'spm.stem.{idx + 1}', cout, bn=True)
    widths = [inplanes, 2 * inplanes, 4 * inplanes, 4 * inplanes]
    for level in (2, 3, 4):
        layout[f'spm.conv{level}.0.weight'] = (widths[level - 1],
                                               widths[level - 2], 3, 3)
        norm(f'spm.conv{level}.1', widths[level - 1], bn=True)
    for level in (1, 2, 3, 4):
        layout[f'spm.fc{level}.weight'] = (dims, widths[level - 1], 1, 1)
        layout[f'spm.fc{level}.bias'] = (dims, )
    # interactions
    hidden = int(dims * cffn_ratio)

    def extractor(name):
        norm(f'{name}.query_norm', dims)
        norm(f'{name}.feat_norm', dims)
        deform_attn(f'{name}.attn', 1)
        linear(f'{name}.ffn.fc1', hidden, dims)
        layout[f'{name}.ffn.dwconv.dwconv.weight'] = (hidden, 1, 3, 3)
        layout[f'{name}.ffn.dwconv.dwconv.bias'] = (hidden, )
        linear(f'{name}.ffn.fc2', dims, hidden)
        norm(f'{name}.ffn_norm', dims)

    for i in range(stages):
        norm(f'interactions.{i}.injector.query_norm', dims)
        norm(f'interactions.{i}.injector.feat_norm', dims)
        deform_attn(f'interactions.{i}.injector.attn', 3)
        layout[f'interactions.{i}.injector.gamma'] = (dims, )
        extractor(f'interactions.{i}.extractor')
    for j in range(extra):
        extractor(f'interactions.{stages - 1}.extra_extractors.{j}')
    layout['up.weight'] = (dims, dims, 2, 2)
    layout['up.bias'] = (dims, )
    for level in (1, 2, 3, 4):
        norm(f'norm{level}', dims, bn=True)
    return layout


def _random_state(layout, seed=0):
    """Distinct random values for every entry (integers for counters)."""
    gen = torch.Generator().manual_seed(seed)
    return {
        k: (torch.randint(1, 1000, shape, generator=gen)
            if k.endswith('num_batches_tracked') else torch.randn(
                shape, generator=gen))
        for k, shape in layout.items()
    }


def _num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _reference_forward(model, x):
    """The published detection forward, composed from the model's own
    sub-modules: the ViT map after the LAST interaction stage, resized by
    4, 2, 1, 1/2, is added to the stride 4, 8, 16, 32 outputs."""
    c1, c2, c3, c4 = model.spm(x)
    shapes = [tuple(c.shape[-2:]) for c in (c2, c3, c4)]
    b, dims = c1.shape[:2]
    c = torch.cat([
        p.flatten(2).transpose(1, 2) + model.level_embed[i]
        for i, p in enumerate((c2, c3, c4))
    ], 1)
    tokens, h, w = model.patch_embed(x)
    g = model.pretrain_grid
    pos = model.pos_embed[:, 1:].reshape(1, *g, dims).permute(0, 3, 1, 2)
    pos = F.interpolate(pos, size=(h, w), mode='bicubic', align_corners=False)
    tokens = tokens + pos.flatten(2).transpose(1, 2)
    inj, ext = deform_inputs(shapes, (h, w), x.device)
    for (first, last), block in zip(model.interaction_indexes,
                                    model.interactions):
        tokens = block.injector(tokens, c, **inj)
        for blk in model.blocks[first:last + 1]:
            tokens = blk(tokens, h, w)
        for extractor in [block.extractor, *block.extra_extractors]:
            c = extractor(c, tokens, shapes, **ext)
    n2, n3 = shapes[0][0] * shapes[0][1], shapes[1][0] * shapes[1][1]
    c2 = c[:, :n2].transpose(1, 2).reshape(b, dims, *shapes[0])
    c3 = c[:, n2:n2 + n3].transpose(1, 2).reshape(b, dims, *shapes[1])
    c4 = c[:, n2 + n3:].transpose(1, 2).reshape(b, dims, *shapes[2])
    c1 = model.up(c2) + c1
    x3 = tokens.transpose(1, 2).reshape(b, dims, h, w)

    def resized(scale):
        return F.interpolate(
            x3, scale_factor=scale, mode='bilinear', align_corners=False)

    outs = [c1 + resized(4), c2 + resized(2), c3 + x3, c4 + resized(0.5)]
    return [model.norm1(outs[0]), model.norm2(outs[1]),
            model.norm3(outs[2]), model.norm4(outs[3])]


class TestViTAdapter(TestCase):

    def setUp(self):
        register_all_modules()
        torch.manual_seed(0)

    def test_published_checkpoint_loads_strictly(self):
        model = ViTAdapter()  # DeiT-S defaults
        layout = published_layout()
        own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        self.assertEqual(sorted(set(own) - set(layout)), [])
        self.assertEqual(sorted(set(layout) - set(own)), [])
        self.assertEqual(own, layout)

        state = _random_state(layout)
        model.load_state_dict(state, strict=True)
        for key, value in model.state_dict().items():
            self.assertTrue(torch.equal(value, state[key]), key)
        n_params = sum(
            torch.Size(layout[k]).numel() for k, _ in model.named_parameters())
        self.assertEqual(n_params, ADAPTER_S_PARAMS)
        self.assertEqual(_num_params(model), ADAPTER_S_PARAMS)

        # the tiny variant has the same naming scheme
        tiny = ViTAdapter(**TINY)
        tiny_layout = published_layout(
            dims=64, depth=4, grid=4, inplanes=16, heads=2, extra=1)
        self.assertEqual(
            {k: tuple(v.shape)
             for k, v in tiny.state_dict().items()}, tiny_layout)
        tiny.load_state_dict(_random_state(tiny_layout, 1), strict=True)

    def test_adapter_s_forward_backward_with_fpn(self):
        backbone = ViTAdapter()
        neck = MODELS.build(
            dict(
                type='FPN',
                in_channels=[384] * 4,
                out_channels=256,
                add_extra_convs='on_output',
                num_outs=4))
        self.assertEqual(_num_params(neck), FPN_PARAMS)
        backbone.init_weights()
        feats = backbone(torch.randn(1, 3, 64, 96))
        self.assertEqual([f.shape for f in feats],
                         [(1, 384, 64 // s, 96 // s)
                          for s in backbone.strides])
        outs = neck(feats)
        sum(o.mean() for o in outs).backward()
        # every parameter takes part (no DDP unused-parameter errors)
        no_grad = [n for n, p in backbone.named_parameters() if p.grad is None]
        self.assertEqual(no_grad, [])

    def test_forward_adds_final_vit_map_to_every_level(self):
        model = ViTAdapter(**dict(TINY, drop_path_rate=0.))
        state = _random_state(
            published_layout(
                dims=64, depth=4, grid=4, inplanes=16, heads=2, extra=1), 2)
        for key in state:  # keep the random net numerically tame
            if not key.endswith(('running_var', 'num_batches_tracked')):
                state[key] = state[key] * 0.1
            if key.endswith('running_var'):
                state[key] = state[key].abs() + 0.5
        model.load_state_dict(state, strict=True)
        model.eval()
        # 64 x 96: 4 x 6 token grid, not a multiple of the window (3 x 3
        # windows pad the height) in the windowed blocks
        x = torch.randn(1, 3, 64, 96)
        with torch.no_grad():
            outs = model(x)
            expected = _reference_forward(model, x)
        for level, (out, ref) in enumerate(zip(outs, expected)):
            self.assertEqual(out.shape, (1, 64, 16 // 2**level,
                                         24 // 2**level))
            torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)

        # without the ViT maps the outputs differ everywhere
        model.add_vit_feature = False
        with torch.no_grad():
            plain = model(x)
        for out, ref in zip(plain, expected):
            self.assertGreater((out - ref).abs().max().item(), 1e-2)

    def test_tiny_adapter_shapes_and_eval(self):
        model = ViTAdapter(**TINY)
        model.init_weights()
        # 96 x 160 gives a 6 x 10 token grid; 64 x 64 gives 4 x 4
        for h, w in ((96, 160), (64, 64)):
            model.train()
            feats = model(torch.randn(2, 3, h, w))
            self.assertEqual([f.shape for f in feats],
                             [(2, 64, h // s, w // s)
                              for s in (4, 8, 16, 32)])
            model.eval()
            with torch.no_grad():
                self.assertEqual(
                    model(torch.randn(1, 3, h, w))[0].shape,
                    (1, 64, h // 4, w // 4))

    def test_gradient_checkpointing_matches(self):
        cfg = dict(TINY, drop_path_rate=0.)
        plain = ViTAdapter(**cfg)
        plain.init_weights()
        for interaction in plain.interactions:  # let the injectors matter
            torch.nn.init.constant_(interaction.injector.gamma, 0.5)
        ckpt = ViTAdapter(with_cp=True, **cfg)
        ckpt.load_state_dict(plain.state_dict())
        x = torch.randn(2, 3, 64, 96)
        outs = [model(x) for model in (plain, ckpt)]
        for a, b in zip(*outs):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        for out in outs:
            sum(o.sum() for o in out).backward()
        for p, q in zip(plain.parameters(), ckpt.parameters()):
            torch.testing.assert_close(p.grad, q.grad, atol=1e-4, rtol=1e-4)

    def test_pretrained_deit_checkpoint(self):
        with tempfile.TemporaryDirectory() as tmp:
            self._check_pretrained_deit(os.path.join(tmp, 'deit_random.pth'))

    def _check_pretrained_deit(self, path):
        dims, depth, grid = 64, 4, 7
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
        layout = published_layout(dims=dims, depth=depth, grid=grid)
        for key, shape in layout.items():
            if key.startswith('blocks.') and 'gamma' not in key:
                sd[key] = torch.randn(shape)
        torch.save({'model': sd}, path)

        model = MODELS.build(
            dict(
                type='ViTAdapter',
                init_cfg=dict(type='Pretrained', checkpoint=path),
                **TINY))
        model.init_weights()
        self.assertTrue(
            torch.equal(model.blocks[2].attn.qkv.weight,
                        sd['blocks.2.attn.qkv.weight']))
        self.assertTrue(
            torch.equal(model.patch_embed.proj.weight,
                        sd['patch_embed.proj.weight']))
        # class-token slot kept, 7x7 grid resized bicubically to 4x4
        pos = model.pos_embed
        self.assertEqual(pos.shape, (1, 1 + 16, dims))
        self.assertTrue(torch.equal(pos[:, :1], sd['pos_embed'][:, :1]))
        g = sd['pos_embed'][:, 1:].reshape(1, 7, 7, dims).permute(0, 3, 1, 2)
        expected = F.interpolate(g, size=(4, 4), mode='bicubic',
                                 align_corners=False).flatten(2).transpose(
                                     1, 2)
        torch.testing.assert_close(pos[:, 1:], expected)
        # DeiT has no layer scales: they stay 1; injectors start at 0
        self.assertTrue(all(torch.all(b.gamma1 == 1) for b in model.blocks))
        self.assertTrue(torch.all(model.interactions[0].injector.gamma == 0))

        # at the pretrain size the embedding is copied as it is
        same = ViTAdapter(**dict(TINY, pretrain_img_size=112))
        self.assertEqual(same.load_vit_checkpoint(path),
                         dict(missing=[], unexpected=[]))
        self.assertTrue(torch.equal(same.pos_embed, sd['pos_embed']))

        # an incomplete file with a stray key: both are reported
        del sd['blocks.3.mlp.fc2.bias']
        sd['foo.bar'] = torch.zeros(3)
        sd['blocks.0.norm1.weight'] = torch.zeros(5)
        torch.save({'model': sd}, path)
        report = model.load_vit_checkpoint(path)
        self.assertEqual(
            set(report['missing']),
            {'blocks.3.mlp.fc2.bias', 'blocks.0.norm1.weight'})
        self.assertEqual(
            set(report['unexpected']),
            {'foo.bar', 'blocks.0.norm1.weight (shape (5,) vs (64,))'})

    def test_export_path_of_deformable_attention_matches(self):
        """The deformable attention's export path (Python-int level shapes)
        gives mmcv's CPU values."""
        torch.manual_seed(0)
        model = ViTAdapter(**dict(TINY, drop_path_rate=0.)).eval()
        model.init_weights()
        for interaction in model.interactions:  # let the injectors matter
            torch.nn.init.constant_(interaction.injector.gamma, 0.5)
        x = torch.randn(1, 3, 64, 96)
        with torch.no_grad():
            ref = model(x)
            with mock.patch(
                    'mmdet_sparse.models.backbones.adapter_modules.'
                    'is_exporting', return_value=True) as flag:
                out = model(x)
        self.assertTrue(flag.called)
        for a, b in zip(out, ref):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
