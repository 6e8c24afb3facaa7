"""Plain ViT layers of the ViT-Adapter backbone.

Module and parameter names follow the published ViT-Adapter detection
checkpoints, which extend the timm ViT layout (``patch_embed.proj``,
``blocks.{i}.norm1``, ``blocks.{i}.attn.qkv``, ``blocks.{i}.attn.proj``,
``blocks.{i}.norm2``, ``blocks.{i}.mlp.fc1``, ``blocks.{i}.mlp.fc2``) with the
layer scales ``blocks.{i}.gamma1`` / ``blocks.{i}.gamma2``, so that both DeiT
weights and the released detectors load by name.
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn.bricks import DropPath
from torch import Tensor


class PatchEmbed(nn.Module):
    """Non-overlapping patch projection.

    Args:
        patch_size (int): Patch side in pixels. Defaults to 16.
        in_channels (int): Image channels. Defaults to 3.
        embed_dims (int): Token channels. Defaults to 384.
    """

    def __init__(self,
                 patch_size: int = 16,
                 in_channels: int = 3,
                 embed_dims: int = 384) -> None:
        super().__init__()
        self.proj = nn.Conv2d(
            in_channels, embed_dims, patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tuple[Tensor, int, int]:
        """(B, 3, H, W) -> tokens (B, h*w, C) and grid size h = H // patch,
        w = W // patch."""
        x = self.proj(x)
        h, w = x.shape[-2:]
        return x.flatten(2).transpose(1, 2), h, w


class Attention(nn.Module):
    """Multi-head self-attention over all tokens.

    Args:
        embed_dims (int): Token channels.
        num_heads (int): Attention heads.
        qkv_bias (bool): Bias in the qkv projection. Defaults to True.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 qkv_bias: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(embed_dims, embed_dims * 3, bias=qkv_bias)
        self.proj = nn.Linear(embed_dims, embed_dims)

    def _heads(self, qkv: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """(B', N, 3C) projections -> q, k, v, each (B', heads, N, C/heads)."""
        b, n, c3 = qkv.shape
        qkv = qkv.reshape(b, n, 3, self.num_heads, c3 // 3 // self.num_heads)
        return qkv.permute(2, 0, 3, 1, 4).unbind(0)

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:
        """Tokens (B, h*w, C) -> (B, h*w, C); ``h``/``w`` are unused."""
        b, n, c = x.shape
        out = F.scaled_dot_product_attention(*self._heads(self.qkv(x)))
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class WindowAttention(Attention):
    """Self-attention inside non-overlapping ``window_size`` squares.

    When the (h, w) token grid is not a multiple of the window, the qkv
    *projections* are zero-padded at the bottom/right and the padded keys are
    not masked: a padded position has q = k = v = 0, so every query in a
    border window also gives weight ``exp(0)`` (before normalisation) to each
    padded key, which contributes a zero value. This is the arithmetic of the
    published ViT-Adapter detectors (their weights were trained with it).

    Args:
        embed_dims (int): Token channels.
        num_heads (int): Attention heads.
        qkv_bias (bool): Bias in the qkv projection. Defaults to True.
        window_size (int): Window side in tokens. Defaults to 14.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 qkv_bias: bool = True,
                 window_size: int = 14) -> None:
        super().__init__(embed_dims, num_heads, qkv_bias)
        self.window_size = window_size

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:
        """Tokens (B, h*w, C) -> (B, h*w, C)."""
        ws = self.window_size
        b, n, c = x.shape
        pad_h, pad_w = (-h) % ws, (-w) % ws
        qkv = self.qkv(x).view(b, h, w, 3 * c)
        qkv = F.pad(qkv, (0, 0, 0, pad_w, 0, pad_h))  # zeros after the proj
        hp, wp = h + pad_h, w + pad_w
        windows = _window_partition(qkv, ws)  # (B * nW, ws*ws, 3C)
        out = F.scaled_dot_product_attention(*self._heads(windows))
        out = out.transpose(1, 2).reshape(-1, ws * ws, c)
        out = _window_reverse(out, ws, b, hp, wp)[:, :h, :w]
        return self.proj(out.reshape(b, n, c))


def _window_partition(x: Tensor, ws: int) -> Tensor:
    """(B, Hp, Wp, C) -> (B * Hp/ws * Wp/ws, ws*ws, C)."""
    b, hp, wp, c = x.shape
    x = x.view(b, hp // ws, ws, wp // ws, ws, c).transpose(2, 3)
    return x.reshape(-1, ws * ws, c)


def _window_reverse(x: Tensor, ws: int, b: int, hp: int, wp: int) -> Tensor:
    """(B * nW, ws*ws, C) -> (B, Hp, Wp, C)."""
    x = x.view(b, hp // ws, wp // ws, ws, ws, -1).transpose(2, 3)
    return x.reshape(b, hp, wp, -1)


class Mlp(nn.Module):
    """Two-layer MLP with GELU.

    Args:
        embed_dims (int): Input/output channels.
        hidden_dims (int): Hidden channels.
    """

    def __init__(self, embed_dims: int, hidden_dims: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(embed_dims, hidden_dims)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dims, embed_dims)

    def forward(self, x: Tensor) -> Tensor:
        """(..., C) -> (..., C)."""
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm ViT block, global or windowed attention, optional layer
    scale.

    Args:
        embed_dims (int): Token channels.
        num_heads (int): Attention heads.
        mlp_ratio (float): MLP hidden / embed channels. Defaults to 4.
        qkv_bias (bool): Bias in the qkv projection. Defaults to True.
        drop_path (float): Stochastic depth rate. Defaults to 0.
        window_size (int, optional): Window side for windowed attention;
            None for global attention. Defaults to None.
        layer_scale (bool): Learnable per-channel scales ``gamma1`` (attention
            branch) and ``gamma2`` (MLP branch), initialised to 1.
            Defaults to True.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 mlp_ratio: float = 4.,
                 qkv_bias: bool = True,
                 drop_path: float = 0.,
                 window_size: Optional[int] = None,
                 layer_scale: bool = True) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(embed_dims, eps=1e-6)
        if window_size is None:
            self.attn = Attention(embed_dims, num_heads, qkv_bias)
        else:
            self.attn = WindowAttention(embed_dims, num_heads, qkv_bias,
                                        window_size)
        self.drop_path = (DropPath(drop_path)
                          if drop_path > 0 else nn.Identity())
        self.norm2 = nn.LayerNorm(embed_dims, eps=1e-6)
        self.mlp = Mlp(embed_dims, int(embed_dims * mlp_ratio))
        self.layer_scale = layer_scale
        if layer_scale:
            self.gamma1 = nn.Parameter(torch.ones(embed_dims))
            self.gamma2 = nn.Parameter(torch.ones(embed_dims))

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:
        """Tokens (B, h*w, C) -> (B, h*w, C)."""
        attn = self.attn(self.norm1(x), h, w)
        if self.layer_scale:
            attn = self.gamma1 * attn
        x = x + self.drop_path(attn)
        mlp = self.mlp(self.norm2(x))
        if self.layer_scale:
            mlp = self.gamma2 * mlp
        return x + self.drop_path(mlp)
