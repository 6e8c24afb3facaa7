"""Adapter pieces of the ViT-Adapter backbone: the per-level depthwise conv
of the ConvFFN and the spatial prior module's published layout."""
from unittest import TestCase

import torch
import torch.nn.functional as F

from mmdet_sparse.models.backbones.adapter_modules import (ConvFFN,
                                                           SpatialPriorModule)


class TestAdapterModules(TestCase):

    def test_conv_ffn_convolves_each_level_separately(self):
        torch.manual_seed(0)
        ffn = ConvFFN(8, 4)
        h, w = 4, 6  # ViT grid; levels 8 x 12, 4 x 6, 2 x 3
        shapes = [(2 * h, 2 * w), (h, w), (h // 2, w // 2)]
        x = torch.randn(2, sum(a * b for a, b in shapes), 8)
        # published rule: N = 21 n tokens, split 16 n | 4 n | n
        n = x.shape[1] // 21
        hid = ffn.fc1(x)
        conv = ffn.dwconv.dwconv
        parts = []
        for (a, b), (lo, hi) in zip(shapes, ((0, 16 * n), (16 * n, 20 * n),
                                             (20 * n, 21 * n))):
            m = hid[:, lo:hi].transpose(1, 2).reshape(2, 4, a, b)
            parts.append(conv(m).flatten(2).transpose(1, 2))
        expected = ffn.fc2(F.gelu(torch.cat(parts, 1)))
        torch.testing.assert_close(ffn(x, shapes), expected)

    def test_spatial_prior_module(self):
        spm = SpatialPriorModule(8, 16).eval()
        self.assertEqual(
            [k for k in spm.state_dict() if k.endswith('weight')],
            ['stem.0.weight', 'stem.1.weight', 'stem.3.weight',
             'stem.4.weight', 'stem.6.weight', 'stem.7.weight',
             'conv2.0.weight', 'conv2.1.weight', 'conv3.0.weight',
             'conv3.1.weight', 'conv4.0.weight', 'conv4.1.weight',
             'fc1.weight', 'fc2.weight', 'fc3.weight', 'fc4.weight'])
        x = torch.randn(1, 3, 64, 96)
        with torch.no_grad():
            feats = spm(x)
            c2 = spm.conv2(spm.stem(x))
            torch.testing.assert_close(feats[1], spm.fc2(c2))
        self.assertEqual([f.shape for f in feats],
                         [(1, 16, 64 // s, 96 // s) for s in (4, 8, 16, 32)])
