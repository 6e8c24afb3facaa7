"""ViT-Adapter backbone: a plain ViT plus a spatial prior module and
interaction blocks, giving a stride 4/8/16/32 pyramid for dense heads.

This is the published detection model of ViT-Adapter (the DeiT-S Sparse R-CNN
release): same parameter names and shapes, so its checkpoints load with
``strict=True``, and the same forward arithmetic (the final ViT map added to
all four levels; window attention padded after the qkv projection, unmasked).

Pretrained plain-ViT weights (DeiT/timm layout) load through
``init_cfg=dict(type='Pretrained', checkpoint=PATH)``; see
:meth:`ViTAdapter.load_vit_checkpoint`.
"""
import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmcv.ops import MultiScaleDeformableAttention
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmengine.runner.checkpoint import CheckpointLoader
from torch import Tensor

from mmdet_sparse.registry import MODELS
from .adapter_modules import (InteractionBlock, SpatialPriorModule,
                              deform_inputs, resize_pos_embed)
from .vit_layers import Block, PatchEmbed


@MODELS.register_module()
class ViTAdapter(BaseModule):
    """ViT-Adapter (defaults: ViT-S/16 as in DeiT-S, 4 interaction stages).

    Args:
        pretrain_img_size (int): Image size the position embedding was
            trained at; ``pos_embed`` holds a class-token slot (unused)
            and a ``(size // patch_size) ** 2`` grid. Defaults to 224.
        patch_size (int): ViT patch size. Defaults to 16.
        embed_dims (int): ViT width. Defaults to 384.
        depth (int): Number of ViT blocks. Defaults to 12.
        num_heads (int): ViT attention heads. Defaults to 6.
        mlp_ratio (float): ViT MLP ratio. Defaults to 4.
        qkv_bias (bool): Bias in qkv projections. Defaults to True.
        drop_path_rate (float): Stochastic depth, linearly increasing over the
            ViT blocks; the extractors' ConvFFNs use the full rate.
            Defaults to 0.2.
        layer_scale (bool): Per-channel scales ``gamma1``/``gamma2`` on the
            two branches of each ViT block, initialised to 1 (DeiT weights
            lack them). Defaults to True.
        window_size (int): Window side for windowed blocks. Defaults to 14.
        global_attn_indexes (Sequence[int]): Blocks with global attention;
            the rest use window attention. Defaults to (2, 5, 8, 11).
        interaction_indexes (Sequence[Sequence[int]]): [first, last] ViT block
            of each interaction stage. Defaults to
            ((0, 2), (3, 5), (6, 8), (9, 11)).
        conv_inplanes (int): Spatial prior stem width. Defaults to 64.
        deform_num_heads (int): Deformable attention heads. Defaults to 6.
        n_points (int): Deformable sampling points. Defaults to 4.
        deform_ratio (float): Deformable value projection ratio.
            Defaults to 1.0.
        cffn_ratio (float): ConvFFN hidden ratio. Defaults to 0.25.
        num_extra_extractors (int): Extra extractors in the last stage.
            Defaults to 2.
        add_vit_feature (bool): Add the final ViT token map (after the last
            block), bilinearly resized, to each of the 4 outputs.
            Defaults to True.
        norm_cfg (dict): Norm of the spatial prior convs and of the 4
            outputs (``norm1``-``norm4``). Defaults to ``dict(type='BN')``.
        with_cp (bool): Gradient checkpointing. Defaults to False.
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=PATH)``
            to load plain-ViT weights. Defaults to None.

    Shapes:
        Input (B, 3, H, W), H and W multiples of 32; output: 4 maps
        (B, embed_dims, H/s, W/s) for s = 4, 8, 16, 32.
    """

    def __init__(self,
                 pretrain_img_size: int = 224,
                 patch_size: int = 16,
                 embed_dims: int = 384,
                 depth: int = 12,
                 num_heads: int = 6,
                 mlp_ratio: float = 4.,
                 qkv_bias: bool = True,
                 drop_path_rate: float = 0.2,
                 layer_scale: bool = True,
                 window_size: int = 14,
                 global_attn_indexes: Sequence[int] = (2, 5, 8, 11),
                 interaction_indexes: Sequence[Sequence[int]] = ((0, 2),
                                                                 (3, 5),
                                                                 (6, 8),
                                                                 (9, 11)),
                 conv_inplanes: int = 64,
                 deform_num_heads: int = 6,
                 n_points: int = 4,
                 deform_ratio: float = 1.0,
                 cffn_ratio: float = 0.25,
                 num_extra_extractors: int = 2,
                 add_vit_feature: bool = True,
                 norm_cfg: dict = dict(type='BN'),
                 with_cp: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.patch_size = patch_size
        self.pretrain_grid = (pretrain_img_size // patch_size, ) * 2
        self.interaction_indexes = [tuple(i) for i in interaction_indexes]
        self.add_vit_feature = add_vit_feature
        self.out_channels = (embed_dims, ) * 4
        self.strides = (4, 8, 16, 32)

        # plain ViT (timm names); the position embedding keeps DeiT's
        # class-token slot (index 0, unused: there is no class token)
        self.patch_embed = PatchEmbed(patch_size, 3, embed_dims)
        num_patches = self.pretrain_grid[0] * self.pretrain_grid[1]
        self.pos_embed = nn.Parameter(
            torch.zeros(1, 1 + num_patches, embed_dims))
        dpr = torch.linspace(0, drop_path_rate, depth).tolist()
        self.blocks = nn.ModuleList(
            Block(embed_dims, num_heads, mlp_ratio, qkv_bias, dpr[i],
                  None if i in global_attn_indexes else window_size,
                  layer_scale) for i in range(depth))

        # adapter
        self.level_embed = nn.Parameter(torch.zeros(3, embed_dims))
        self.spm = SpatialPriorModule(conv_inplanes, embed_dims, norm_cfg)
        last = len(self.interaction_indexes) - 1
        self.interactions = nn.ModuleList(
            InteractionBlock(
                embed_dims,
                deform_num_heads,
                n_points,
                deform_ratio,
                cffn_ratio,
                drop_path_rate,
                num_extra_extractors=num_extra_extractors if i == last else 0,
                with_cp=with_cp) for i in range(len(self.interaction_indexes)))
        self.up = nn.ConvTranspose2d(embed_dims, embed_dims, 2, 2)
        for level in range(1, 5):
            self.add_module(f'norm{level}',
                            build_norm_layer(norm_cfg, embed_dims)[1])

    # ------------------------------------------------------------------ init
    def init_weights(self) -> None:
        """Random init, then plain-ViT weights if ``init_cfg`` is
        ``dict(type='Pretrained', checkpoint=PATH)``."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.LayerNorm, nn.modules.batchnorm._BatchNorm,
                                nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * \
                    m.out_channels // m.groups
                nn.init.normal_(m.weight, 0, math.sqrt(2.0 / fan_out))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, MultiScaleDeformableAttention):
                m.init_weights()
        nn.init.trunc_normal_(self.pos_embed, std=.02)
        nn.init.normal_(self.level_embed)
        for interaction in self.interactions:
            nn.init.zeros_(interaction.injector.gamma)
        for blk in self.blocks:
            if blk.layer_scale:
                nn.init.ones_(blk.gamma1)
                nn.init.ones_(blk.gamma2)

        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            self.load_vit_checkpoint(cfg['checkpoint'])
        self._is_init = True

    def load_vit_checkpoint(self, path: str) -> Dict[str, List[str]]:
        """Load plain-ViT weights (DeiT/timm layout) into the ViT part.

        The file holds ``{'model': state_dict}``, ``{'state_dict': ...}`` or a
        bare state dict with timm names. The class/distillation tokens and
        classifier heads are dropped (the final ``norm`` too: the adapter has
        its own output norms). ``pos_embed`` (1, [1|2] + h*w, C) keeps its
        class-token entry and has its h x w grid resized bicubically to this
        model's pretrain grid (DeiT-S at 224 px fits as it is). Layer scales
        that the file lacks (DeiT has none) stay at their initial 1; timm's
        ``ls1.gamma``/``ls2.gamma`` load into ``gamma1``/``gamma2``.

        Args:
            path (str): Local file (read with ``weights_only=True``) or any
                URI mmengine's ``CheckpointLoader`` understands.

        Returns:
            dict: ``missing`` (ViT parameters the file lacks) and
            ``unexpected`` (file entries that match nothing), both also
            logged as warnings.
        """
        if '://' in path:
            ckpt = CheckpointLoader.load_checkpoint(path, map_location='cpu')
        else:
            ckpt = torch.load(path, map_location='cpu', weights_only=True)
        state = self.convert_vit_state_dict(ckpt)

        own = self.state_dict()
        vit_keys = [
            k for k in own
            if (k.startswith(('patch_embed.', 'blocks.')) or k == 'pos_embed')
            and not k.endswith(('.gamma1', '.gamma2'))
        ]
        loadable = {}
        unexpected = []
        for key, value in state.items():
            if key in own and own[key].shape == value.shape:
                loadable[key] = value
            else:
                unexpected.append(key if key not in own else
                                  f'{key} (shape {tuple(value.shape)} vs '
                                  f'{tuple(own[key].shape)})')
        missing = [k for k in vit_keys if k not in loadable]
        self.load_state_dict(loadable, strict=False)
        print_log(
            f'ViTAdapter: loaded {len(loadable)} ViT tensors from {path}; '
            'adapter layers keep their random init.', logger='current')
        if missing:
            print_log(f'ViTAdapter: missing ViT keys in {path}: {missing}',
                      logger='current', level=30)
        if unexpected:
            print_log(f'ViTAdapter: unexpected keys in {path}: {unexpected}',
                      logger='current', level=30)
        return dict(missing=missing, unexpected=unexpected)

    def convert_vit_state_dict(self, ckpt: dict) -> Dict[str, Tensor]:
        """Turn a timm-layout ViT checkpoint into this model's key layout.

        Args:
            ckpt (dict): Loaded checkpoint (see :meth:`load_vit_checkpoint`).

        Returns:
            dict[str, Tensor]: Entries for the ViT part, plus any keys that
            are not plain-ViT entries (left as they are, so that they show up
            as unexpected).
        """
        for wrapper in ('model', 'state_dict'):
            if isinstance(ckpt.get(wrapper), dict):
                ckpt = ckpt[wrapper]
                break
        dropped = ('cls_token', 'dist_token', 'head.', 'head_dist.', 'norm.',
                   'fc_norm.')
        renamed = {'.ls1.gamma': '.gamma1', '.ls2.gamma': '.gamma2'}
        state = {}
        for key, value in ckpt.items():
            key = key[len('module.'):] if key.startswith('module.') else key
            if key.startswith(dropped):
                continue
            for old, new in renamed.items():
                if key.startswith('blocks.') and key.endswith(old):
                    key = key[:-len(old)] + new
            if key == 'pos_embed':
                value = self._convert_pos_embed(value)
            state[key] = value
        return state

    def _convert_pos_embed(self, pos_embed: Tensor) -> Tensor:
        """(1, [0|1|2] + h*w, C) square-grid embedding -> (1, 1 + H*W, C):
        the class-token slot (zeros if the file has none; a distillation
        token is dropped) and the grid resized to the pretrain grid."""
        n = pos_embed.shape[1]
        side = math.isqrt(n)
        extra = n - side * side
        if extra not in (0, 1, 2):
            return pos_embed  # not a square grid; reported as mismatched
        cls_slot = (pos_embed[:, :1] if extra else
                    pos_embed.new_zeros(1, 1, pos_embed.shape[2]))
        grid = resize_pos_embed(pos_embed[:, extra:], (side, side),
                                self.pretrain_grid)
        return torch.cat([cls_slot, grid], dim=1)

    # --------------------------------------------------------------- forward
    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        """Image (B, 3, H, W) -> 4 maps (B, C, H/s, W/s), s = 4, 8, 16, 32.

        The stride-4 output is the spatial prior's stride-4 map plus the
        upsampled (``up``) stride-8 adapter map; with ``add_vit_feature`` the
        final ViT token map (stride 16, after the last block) is bilinearly
        resized and added to every level; ``norm1``-``norm4`` come last.
        """
        c1, *priors = self.spm(x)
        prior_shapes = [tuple(p.shape[-2:]) for p in priors]
        c = torch.cat([(p.flatten(2).transpose(1, 2) + lvl)
                       for p, lvl in zip(priors, self.level_embed)], dim=1)

        tokens, h, w = self.patch_embed(x)
        tokens = tokens + resize_pos_embed(self.pos_embed[:, 1:],
                                           self.pretrain_grid, (h, w))
        inj, ext = deform_inputs(prior_shapes, (h, w), x.device)

        for (first, last), interaction in zip(self.interaction_indexes,
                                              self.interactions):
            tokens, c = interaction(tokens, c, self.blocks[first:last + 1],
                                    inj, ext, (h, w), prior_shapes)

        b, _, dims = tokens.shape
        sizes = [hh * ww for hh, ww in prior_shapes]
        c2, c3, c4 = [
            t.transpose(1, 2).reshape(b, dims, *shape)
            for t, shape in zip(c.split(sizes, dim=1), prior_shapes)
        ]
        c1 = c1 + _match(self.up(c2), c1)
        outs = [c1, c2, c3, c4]
        if self.add_vit_feature:
            vit_map = tokens.transpose(1, 2).reshape(b, dims, h, w)
            outs = [o + _match(vit_map, o) for o in outs]
        return tuple(
            getattr(self, f'norm{level}')(o)
            for level, o in enumerate(outs, 1))


def _match(x: Tensor, ref: Tensor) -> Tensor:
    """Bilinearly resize ``x`` (B, C, h, w) to the spatial size of ``ref``."""
    if x.shape[-2:] == ref.shape[-2:]:
        return x
    return F.interpolate(
        x, size=ref.shape[-2:], mode='bilinear', align_corners=False)
