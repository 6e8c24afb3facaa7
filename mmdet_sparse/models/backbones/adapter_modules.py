"""Adapter pieces of the ViT-Adapter backbone.

* :class:`SpatialPriorModule`: a small conv net giving the stride 4/8/16/32
  "spatial prior" maps, projected to the ViT width.
* :class:`Injector`: spatial-prior tokens -> ViT tokens (deformable
  cross-attention, layer-scale ``gamma`` initialised to 0).
* :class:`Extractor`: ViT tokens -> spatial-prior tokens (deformable
  cross-attention + :class:`ConvFFN`).
* :class:`InteractionBlock`: injector, a run of ViT blocks, extractor(s).

Module and parameter names are those of the published ViT-Adapter detection
checkpoints (``spm.conv2``/``spm.fc1``, ``extractor``/``extra_extractors``,
``ffn.dwconv.dwconv``), so that their weights load with ``strict=True``.

Spatial-prior tokens ``c`` are the stride 8, 16 and 32 maps flattened and
concatenated, (B, N8 + N16 + N32, C).
"""
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks import DropPath
from mmcv.ops import MultiScaleDeformableAttention
from torch import Tensor

from mmdet_sparse.models.roi_heads.roi_extractors.export_roi_align import \
    is_exporting

Shapes = List[Tuple[int, int]]


def _reference_points(shapes: Shapes, device: torch.device) -> Tensor:
    """Normalised pixel centres of each (h, w) grid, concatenated:
    (1, sum(h*w), 1, 2) as (x, y) in [0, 1]."""
    points = []
    for h, w in shapes:
        ys, xs = torch.meshgrid(
            (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h,
            (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w,
            indexing='ij')
        points.append(torch.stack([xs.reshape(-1), ys.reshape(-1)], -1))
    return torch.cat(points)[None, :, None]


def deform_inputs(prior_shapes: Shapes, vit_shape: Tuple[int, int],
                  device: torch.device) -> Tuple[Dict, Dict]:
    """Reference points and value layouts of the two attention directions.

    Args:
        prior_shapes (list[tuple[int, int]]): (h, w) of the stride 8, 16, 32
            spatial-prior maps.
        vit_shape (tuple[int, int]): (h, w) of the ViT token grid.
        device (torch.device): Device of the returned tensors.

    Returns:
        tuple[dict, dict]: Keyword arguments (``reference_points``,
        ``spatial_shapes``, ``level_start_index``) for the injector (queries:
        ViT tokens, values: the 3 prior levels) and for the extractor
        (queries: prior tokens, values: the ViT tokens).
    """

    def layout(shapes: Shapes) -> Tuple[Tensor, Tensor]:
        spatial = torch.as_tensor(shapes, dtype=torch.long, device=device)
        sizes = spatial.prod(1)
        return spatial, torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])

    spatial, start = layout(prior_shapes)
    # ``shapes``: the same layout as Python ints, for the export path.
    inj = dict(reference_points=_reference_points([vit_shape], device),
               spatial_shapes=spatial, level_start_index=start,
               shapes=list(prior_shapes))
    spatial, start = layout([vit_shape])
    ext = dict(reference_points=_reference_points(prior_shapes, device),
               spatial_shapes=spatial, level_start_index=start,
               shapes=[vit_shape])
    return inj, ext


class SpatialPriorModule(nn.Module):
    """Conv stem giving spatial priors at strides 4, 8, 16 and 32.

    Submodules: ``stem`` (three 3x3 conv-norm-ReLU, the first with stride 2,
    then a stride-2 max pool), ``conv2``/``conv3``/``conv4`` (one stride-2
    3x3 conv-norm-ReLU each) and the 1x1 projections ``fc1``-``fc4`` of the
    four maps to ``embed_dims``.

    Args:
        inplanes (int): Stem width; ``conv2``-``conv4`` have 2x, 4x, 4x.
            Defaults to 64.
        embed_dims (int): Output channels (the ViT width). Defaults to 384.
        norm_cfg (dict): Norm layer config. Defaults to BN.
    """

    def __init__(self,
                 inplanes: int = 64,
                 embed_dims: int = 384,
                 norm_cfg: dict = dict(type='BN')) -> None:
        super().__init__()

        def conv(cin: int, cout: int, stride: int) -> List[nn.Module]:
            return [
                nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
                build_norm_layer(norm_cfg, cout)[1],
                nn.ReLU(inplace=True)
            ]

        self.stem = nn.Sequential(*conv(3, inplanes, 2),
                                  *conv(inplanes, inplanes, 1),
                                  *conv(inplanes, inplanes, 1),
                                  nn.MaxPool2d(3, 2, 1))
        widths = [inplanes, 2 * inplanes, 4 * inplanes, 4 * inplanes]
        for level in (2, 3, 4):
            self.add_module(
                f'conv{level}',
                nn.Sequential(*conv(widths[level - 2], widths[level - 1], 2)))
        for level, width in enumerate(widths, 1):
            self.add_module(f'fc{level}', nn.Conv2d(width, embed_dims, 1))

    def forward(self, x: Tensor) -> List[Tensor]:
        """Image (B, 3, H, W) -> 4 maps (B, C, H/s, W/s), s = 4, 8, 16, 32."""
        feats = [self.stem(x)]
        for level in (2, 3, 4):
            feats.append(getattr(self, f'conv{level}')(feats[-1]))
        return [
            getattr(self, f'fc{level}')(f) for level, f in enumerate(feats, 1)
        ]


class DWConv(nn.Module):
    """Depthwise 3x3 conv run on each prior level's map separately.

    Args:
        channels (int): Channels.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(channels, channels, 3, 1, 1, groups=channels)

    def forward(self, x: Tensor, shapes: Shapes) -> Tensor:
        """Tokens (B, N, C), levels of ``shapes`` concatenated -> (B, N, C)."""
        b, _, c = x.shape
        parts = x.split([h * w for h, w in shapes], dim=1)
        return torch.cat([
            self.dwconv(p.transpose(1, 2).reshape(b, c, h, w)).flatten(2)
            for p, (h, w) in zip(parts, shapes)
        ], dim=2).transpose(1, 2)


class ConvFFN(nn.Module):
    """Token MLP with a depthwise 3x3 conv (:class:`DWConv`) on each prior
    level between ``fc1`` and the GELU.

    Args:
        embed_dims (int): Input/output channels.
        hidden_dims (int): Hidden channels.
    """

    def __init__(self, embed_dims: int, hidden_dims: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(embed_dims, hidden_dims)
        self.dwconv = DWConv(hidden_dims)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dims, embed_dims)

    def forward(self, x: Tensor, shapes: Shapes) -> Tensor:
        """Prior tokens (B, N, C) with levels of ``shapes`` -> (B, N, C)."""
        return self.fc2(self.act(self.dwconv(self.fc1(x), shapes)))


class _CrossAttention(nn.Module):
    """Normed queries/values into mmcv's multi-scale deformable attention,
    returning only the attention output (no residual)."""

    def __init__(self, embed_dims: int, num_heads: int, num_levels: int,
                 num_points: int, value_ratio: float) -> None:
        super().__init__()
        self.query_norm = nn.LayerNorm(embed_dims, eps=1e-6)
        self.feat_norm = nn.LayerNorm(embed_dims, eps=1e-6)
        self.attn = MultiScaleDeformableAttention(
            embed_dims=embed_dims,
            num_heads=num_heads,
            num_levels=num_levels,
            num_points=num_points,
            dropout=0.,
            batch_first=True,
            value_proj_ratio=value_ratio)

    def forward(self, query: Tensor, feat: Tensor, **layout) -> Tensor:
        """Queries (B, Nq, C), values (B, Nv, C) -> (B, Nq, C)."""
        if is_exporting():
            return deform_attn_export(
                self.attn, self.query_norm(query), self.feat_norm(feat),
                layout['reference_points'], layout['shapes'])
        return self.attn(
            query=self.query_norm(query),
            value=self.feat_norm(feat),
            identity=torch.zeros_like(query),
            **layout)


def deform_attn_export(attn: nn.Module, query: Tensor, value: Tensor,
                       reference_points: Tensor, shapes: Shapes) -> Tensor:
    """mmcv's ``MultiScaleDeformableAttention`` forward (pure PyTorch CPU
    path, no identity term) with the level shapes as Python ints, so that
    ``torch.export`` sees static splits and ``grid_sample`` (ONNX
    ``GridSample``) instead of data-dependent sizes.

    Args:
        attn (nn.Module): The ``MultiScaleDeformableAttention`` module.
        query (Tensor): (B, Nq, C) normed queries.
        value (Tensor): (B, Nv, C) normed values.
        reference_points (Tensor): (1, Nq, L or 1, 2) normalised (x, y).
        shapes (list[tuple[int, int]]): (h, w) of the L value levels.

    Returns:
        Tensor: (B, Nq, C) attention output.
    """
    bs, num_query, _ = query.shape
    heads, levels, points = attn.num_heads, attn.num_levels, attn.num_points
    value = attn.value_proj(value).view(bs, value.size(1), heads, -1)
    offsets = attn.sampling_offsets(query).view(bs, num_query, heads, levels,
                                                points, 2)
    weights = attn.attention_weights(query).view(
        bs, num_query, heads, levels * points).softmax(-1)
    dims = value.size(-1)
    values = value.split([h * w for h, w in shapes], dim=1)
    sampled = []
    for level, (h, w) in enumerate(shapes):
        # one level of reference points is shared by all value levels
        ref_level = level if reference_points.size(2) > 1 else 0
        ref = reference_points[:, :, None, ref_level, None, :]
        off = offsets[:, :, :, level]
        loc = torch.stack([ref[..., 0] + off[..., 0] / w,
                           ref[..., 1] + off[..., 1] / h], -1)
        grid = (2 * loc - 1).transpose(1, 2).flatten(0, 1)
        feat = values[level].flatten(2).transpose(1, 2).reshape(
            bs * heads, dims, h, w)
        sampled.append(F.grid_sample(feat, grid, mode='bilinear',
                                     padding_mode='zeros',
                                     align_corners=False))
    weights = weights.transpose(1, 2).reshape(bs * heads, 1, num_query,
                                              levels * points)
    out = (torch.stack(sampled, dim=-2).flatten(-2) * weights).sum(-1)
    out = out.view(bs, heads * dims, num_query).transpose(1, 2)
    return attn.output_proj(out.contiguous())


class Injector(_CrossAttention):
    """ViT tokens attend to the 3 prior levels; scaled by ``gamma`` (init 0).

    Args:
        embed_dims (int): Channels.
        num_heads (int): Deformable attention heads.
        num_points (int): Sampling points per head and level.
        value_ratio (float): Value projection width ratio.
    """

    def __init__(self, embed_dims: int, num_heads: int, num_points: int,
                 value_ratio: float) -> None:
        super().__init__(embed_dims, num_heads, 3, num_points, value_ratio)
        self.gamma = nn.Parameter(torch.zeros(embed_dims))

    def forward(self, query: Tensor, feat: Tensor, **layout) -> Tensor:
        """ViT tokens (B, N16, C), prior tokens (B, N, C) -> (B, N16, C)."""
        return query + self.gamma * super().forward(query, feat, **layout)


class Extractor(_CrossAttention):
    """Prior tokens attend to the ViT tokens, then a :class:`ConvFFN`.

    Args:
        embed_dims (int): Channels.
        num_heads (int): Deformable attention heads.
        num_points (int): Sampling points per head.
        value_ratio (float): Value projection width ratio.
        cffn_ratio (float): ConvFFN hidden / embed channels.
        drop_path (float): Stochastic depth on the ConvFFN branch.
    """

    def __init__(self, embed_dims: int, num_heads: int, num_points: int,
                 value_ratio: float, cffn_ratio: float,
                 drop_path: float) -> None:
        super().__init__(embed_dims, num_heads, 1, num_points, value_ratio)
        self.ffn_norm = nn.LayerNorm(embed_dims, eps=1e-6)
        self.ffn = ConvFFN(embed_dims, int(embed_dims * cffn_ratio))
        self.drop_path = (DropPath(drop_path)
                          if drop_path > 0 else nn.Identity())

    def forward(self, query: Tensor, feat: Tensor, prior_shapes: Shapes,
                **layout) -> Tensor:
        """Prior tokens (B, N, C), ViT tokens (B, N16, C) -> (B, N, C)."""
        query = query + super().forward(query, feat, **layout)
        ffn = self.ffn(self.ffn_norm(query), prior_shapes)
        return query + self.drop_path(ffn)


class InteractionBlock(nn.Module):
    """Injector -> ViT blocks -> extractor (+ optional extra extractors).

    Args:
        embed_dims (int): Channels.
        num_heads (int): Deformable attention heads.
        num_points (int): Sampling points.
        value_ratio (float): Value projection width ratio.
        cffn_ratio (float): ConvFFN hidden ratio.
        drop_path (float): Stochastic depth on the ConvFFN branches.
        num_extra_extractors (int): Extractors after ``extractor``, in
            ``extra_extractors`` (the last interaction stage of the published
            models has 2). Defaults to 0.
        with_cp (bool): Gradient checkpointing of each sub-module.
            Defaults to False.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 num_points: int,
                 value_ratio: float,
                 cffn_ratio: float,
                 drop_path: float,
                 num_extra_extractors: int = 0,
                 with_cp: bool = False) -> None:
        super().__init__()
        self.with_cp = with_cp
        self.injector = Injector(embed_dims, num_heads, num_points,
                                 value_ratio)

        def extractor() -> Extractor:
            return Extractor(embed_dims, num_heads, num_points, value_ratio,
                             cffn_ratio, drop_path)

        self.extractor = extractor()
        self.extra_extractors = nn.ModuleList(
            extractor() for _ in range(num_extra_extractors))

    def _run(self, fn: nn.Module, *args, **kwargs) -> Tensor:
        if self.with_cp and torch.is_grad_enabled():
            return cp.checkpoint(fn, *args, use_reentrant=False, **kwargs)
        return fn(*args, **kwargs)

    def forward(self, x: Tensor, c: Tensor, blocks: Sequence[nn.Module],
                inj: Dict, ext: Dict, vit_shape: Tuple[int, int],
                prior_shapes: Shapes) -> Tuple[Tensor, Tensor]:
        """ViT tokens (B, N16, C) and prior tokens (B, N, C) -> same shapes.

        ``inj``/``ext`` are the layouts from :func:`deform_inputs`.
        """
        x = self._run(self.injector, x, c, **inj)
        for blk in blocks:
            x = self._run(blk, x, *vit_shape)
        for extractor in (self.extractor, *self.extra_extractors):
            c = self._run(extractor, c, x, prior_shapes, **ext)
        return x, c


def resize_pos_embed(pos_embed: Tensor, src: Tuple[int, int],
                     dst: Tuple[int, int]) -> Tensor:
    """Bicubically resize a (1, h*w, C) grid position embedding.

    Args:
        pos_embed (Tensor): (1, src_h * src_w, C), no class token.
        src (tuple[int, int]): Its grid (h, w).
        dst (tuple[int, int]): Target grid (h, w).

    Returns:
        Tensor: (1, dst_h * dst_w, C).
    """
    if tuple(src) == tuple(dst):
        return pos_embed
    c = pos_embed.shape[-1]
    grid = pos_embed.reshape(1, *src, c).permute(0, 3, 1, 2)
    grid = F.interpolate(
        grid.float(), size=dst, mode='bicubic', align_corners=False)
    return grid.to(pos_embed.dtype).flatten(2).transpose(1, 2)
