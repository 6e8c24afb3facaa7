"""Plain ViT layers for the ViT-Adapter backbone.

Module and parameter names follow the timm ViT layout (``patch_embed.proj``,
``blocks.{i}.norm1``, ``blocks.{i}.attn.qkv``, ``blocks.{i}.attn.proj``,
``blocks.{i}.norm2``, ``blocks.{i}.mlp.fc1``, ``blocks.{i}.mlp.fc2``) so that
DeiT/ViT checkpoints load by name.
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
    """Multi-head self-attention, global or inside non-overlapping windows.

    Args:
        embed_dims (int): Token channels.
        num_heads (int): Attention heads.
        qkv_bias (bool): Bias in the qkv projection. Defaults to True.
        window_size (int, optional): Window side in tokens; None for global
            attention. Defaults to None.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 qkv_bias: bool = True,
                 window_size: Optional[int] = None) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.window_size = window_size
        self.qkv = nn.Linear(embed_dims, embed_dims * 3, bias=qkv_bias)
        self.proj = nn.Linear(embed_dims, embed_dims)

    def _attend(self, x: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        """Self-attention over (B, N, C) tokens; ``mask`` (B, 1, 1, N) bool,
        True for keys that may be attended."""
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:
        """Tokens (B, h*w, C) -> (B, h*w, C).

        Windowed attention pads the (h, w) grid at the bottom/right to a
        multiple of the window size, attends inside each window (padding keys
        masked out), and crops the result back.
        """
        ws = self.window_size
        if ws is None:
            return self._attend(x)
        b, _, c = x.shape
        pad_h, pad_w = (-h) % ws, (-w) % ws
        x = F.pad(x.view(b, h, w, c), (0, 0, 0, pad_w, 0, pad_h))
        hp, wp = h + pad_h, w + pad_w
        x = _window_partition(x, ws)  # (B * nW, ws*ws, C)
        mask = None
        if pad_h or pad_w:
            valid = x.new_zeros(1, hp, wp, 1, dtype=torch.bool)
            valid[:, :h, :w] = True
            mask = _window_partition(valid, ws).squeeze(-1)  # (nW, ws*ws)
            mask = mask.repeat(b, 1)[:, None, None, :]
        x = self._attend(x, mask)
        x = _window_reverse(x, ws, b, hp, wp)[:, :h, :w]
        return x.reshape(b, h * w, c)


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
    """Pre-norm ViT block with optional window attention.

    Args:
        embed_dims (int): Token channels.
        num_heads (int): Attention heads.
        mlp_ratio (float): MLP hidden / embed channels. Defaults to 4.
        qkv_bias (bool): Bias in the qkv projection. Defaults to True.
        drop_path (float): Stochastic depth rate. Defaults to 0.
        window_size (int, optional): Window side for windowed attention;
            None for global attention. Defaults to None.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 mlp_ratio: float = 4.,
                 qkv_bias: bool = True,
                 drop_path: float = 0.,
                 window_size: Optional[int] = None) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(embed_dims, eps=1e-6)
        self.attn = Attention(embed_dims, num_heads, qkv_bias, window_size)
        self.drop_path = (DropPath(drop_path)
                          if drop_path > 0 else nn.Identity())
        self.norm2 = nn.LayerNorm(embed_dims, eps=1e-6)
        self.mlp = Mlp(embed_dims, int(embed_dims * mlp_ratio))

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:
        """Tokens (B, h*w, C) -> (B, h*w, C)."""
        x = x + self.drop_path(self.attn(self.norm1(x), h, w))
        return x + self.drop_path(self.mlp(self.norm2(x)))
