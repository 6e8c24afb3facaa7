"""ViT layers of the ViT-Adapter backbone: window attention with the
published padding rule (zero-padded q/k/v after the projection, padded keys
not masked) and layer-scaled blocks, against loop-based references."""
from unittest import TestCase

import torch
import torch.nn.functional as F

from mmdet_sparse.models.backbones.vit_layers import (Attention, Block,
                                                      WindowAttention)


def _reference_window_attention(attn, x, h, w, mask_padding=False):
    """One window at a time: q/k/v projected, zero-padded to a multiple of
    the window (bottom/right), softmax(q k^T / sqrt(d)) v over the window's
    keys (padded keys masked out only with ``mask_padding``)."""
    ws, heads = attn.window_size, attn.num_heads
    b, _, c = x.shape
    d = c // heads
    hp, wp = -(-h // ws) * ws, -(-w // ws) * ws
    grid = torch.zeros(b, hp, wp, 3 * c)
    grid[:, :h, :w] = attn.qkv(x).view(b, h, w, 3 * c)
    real = torch.zeros(hp, wp, dtype=torch.bool)
    real[:h, :w] = True
    out = torch.zeros(b, hp, wp, c)
    for i in range(0, hp, ws):
        for j in range(0, wp, ws):
            win = grid[:, i:i + ws, j:j + ws].reshape(b, ws * ws, 3, heads, d)
            q, k, v = win.permute(2, 0, 3, 1, 4)  # (B, heads, ws*ws, d)
            logits = q @ k.transpose(-1, -2) / d**0.5
            if mask_padding:
                keep = real[i:i + ws, j:j + ws].reshape(-1)
                logits = logits.masked_fill(~keep, float('-inf'))
            o = logits.softmax(-1) @ v  # (B, heads, ws*ws, d)
            out[:, i:i + ws, j:j + ws] = o.permute(0, 2, 1, 3).reshape(
                b, ws, ws, c)
    return attn.proj(out[:, :h, :w].reshape(b, h * w, c))


class TestVitLayers(TestCase):

    def setUp(self):
        torch.manual_seed(0)

    def test_window_attention_pads_projections_without_mask(self):
        attn = WindowAttention(32, 4, window_size=3)
        torch.nn.init.normal_(attn.qkv.bias)  # padding before != after
        # 5 x 7 grid: padded to 6 x 9, border windows hold padding
        x = torch.randn(2, 5 * 7, 32)
        out = attn(x, 5, 7)
        expected = _reference_window_attention(attn, x, 5, 7)
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
        # masking the padded keys (the former rule) gives something else
        masked = _reference_window_attention(attn, x, 5, 7, mask_padding=True)
        self.assertGreater((out - masked).abs().max().item(), 1e-2)

    def test_window_attention_without_padding(self):
        glob = Attention(32, 4)
        win = WindowAttention(32, 4, window_size=3)
        win.load_state_dict(glob.state_dict())
        x = torch.randn(2, 6 * 9, 32)
        torch.testing.assert_close(
            win(x, 6, 9), _reference_window_attention(win, x, 6, 9),
            atol=1e-5, rtol=1e-5)
        # one window covering the grid is global attention
        win.window_size = 6
        x = torch.randn(2, 6 * 6, 32)
        torch.testing.assert_close(win(x, 6, 6), glob(x, 6, 6),
                                   atol=1e-5, rtol=1e-5)

    def test_block_layer_scale(self):
        blk = Block(32, 4, window_size=3).eval()
        self.assertEqual(blk.gamma1.shape, (32, ))
        self.assertTrue(torch.all(blk.gamma1 == 1))
        torch.nn.init.normal_(blk.gamma1)
        torch.nn.init.normal_(blk.gamma2)
        x = torch.randn(1, 4 * 5, 32)
        y = x + blk.gamma1 * blk.attn(blk.norm1(x), 4, 5)
        y = y + blk.gamma2 * blk.mlp.fc2(
            F.gelu(blk.mlp.fc1(blk.norm2(y))))
        torch.testing.assert_close(blk(x, 4, 5), y)

        plain = Block(32, 4, layer_scale=False)
        self.assertFalse(any('gamma' in k for k in plain.state_dict()))
