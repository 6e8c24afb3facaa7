"""Instance interactions used in place of the dynamic convolution."""
from unittest import TestCase

import torch

from mmdet_sparse.models import DIIHead
from mmdet_sparse.models.roi_heads.bbox_heads import (AttentionInteraction,
                                                      StaticInteraction)
from mmdet_sparse.registry import MODELS


def _inputs(m=5, c=16, s=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(m, c, generator=gen),
            torch.randn(m, c, s, s, generator=gen))


class TestStaticInteraction(TestCase):

    def test_shape_and_no_dynamic_parameters(self):
        torch.manual_seed(0)
        module = MODELS.build(dict(type='StaticInteraction', in_channels=16,
                                   fc_channels=32, input_feat_shape=3))
        q, r = _inputs()
        out = module(q, r)
        self.assertEqual(out.shape, (5, 16))
        self.assertTrue(bool((out >= 0).all()))
        # No parameter depends on the proposal feature.
        torch.testing.assert_close(module(torch.randn(5, 16), r), out)
        ref = torch.relu(module.fc2(torch.relu(module.fc1(r.flatten(1)))))
        torch.testing.assert_close(out, ref)
        self.assertEqual(sum(p.numel() for p in module.parameters()),
                         16 * 9 * 32 + 32 + 32 * 16 + 16)


class TestAttentionInteraction(TestCase):

    def test_attends_to_its_own_roi(self):
        torch.manual_seed(0)
        module = MODELS.build(dict(type='AttentionInteraction',
                                   in_channels=16, num_heads=4,
                                   input_feat_shape=3))
        q, r = _inputs()
        out = module(q, r)
        self.assertEqual(out.shape, (5, 16))
        # Each output depends on its own query and RoI only.
        r2 = r.clone()
        r2[1] += 1
        out2 = module(q, r2)
        self.assertFalse(torch.allclose(out2[1], out[1]))
        torch.testing.assert_close(out2[[0, 2, 3, 4]], out[[0, 2, 3, 4]])
        self.assertFalse(torch.allclose(module(q * 2, r), out))
        # Keys carry the position: moving the RoI's content changes it.
        flipped = module(q, r.flip(-1))
        self.assertFalse(torch.allclose(flipped, out))
        # Single-query softmax attention over the S*S positions.
        attn = module.attn
        w_q, w_k, w_v = attn.in_proj_weight.chunk(3)
        b_q, b_k, b_v = attn.in_proj_bias.chunk(3)
        roi = r.flatten(2).transpose(1, 2)
        qh = (q @ w_q.T + b_q).view(5, 4, 1, 4)
        kh = ((roi + module.pos_embed) @ w_k.T + b_k).view(5, 9, 4,
                                                           4).transpose(1, 2)
        vh = (roi @ w_v.T + b_v).view(5, 9, 4, 4).transpose(1, 2)
        weights = (qh @ kh.transpose(-1, -2) / 2).softmax(-1)
        ref = attn.out_proj((weights @ vh).reshape(5, 16))
        torch.testing.assert_close(out, ref)

    def test_channels_are_kept(self):
        with self.assertRaisesRegex(ValueError, 'out_channels'):
            AttentionInteraction(in_channels=16, out_channels=8)


class TestInteractionsInDIIHead(TestCase):

    def test_plug_in_place_of_the_dynamic_conv(self):
        for cfg, cls in ((dict(type='StaticInteraction', fc_channels=24),
                          StaticInteraction),
                         (dict(type='AttentionInteraction', num_heads=2),
                          AttentionInteraction)):
            head = DIIHead(num_classes=3, in_channels=16, num_heads=2,
                           feedforward_channels=32, dynamic_conv_cfg=cfg)
            head.init_weights()
            self.assertIsInstance(head.instance_interactive_conv, cls)
            self.assertEqual(head.instance_interactive_conv.in_channels, 16)
            cls_score, deltas, obj, attn = head(
                torch.randn(2 * 4, 16, 7, 7), torch.randn(2, 4, 16))
            self.assertEqual(cls_score.shape, (2, 4, 3))
            self.assertEqual(deltas.shape, (2, 4, 4))
            self.assertEqual(obj.shape, (2, 4, 16))
            keys = set(head.state_dict())
            self.assertFalse(any('dynamic_layer' in k for k in keys))

    def test_head_init_covers_the_position_embedding(self):
        """DIIHead.init_weights draws every matrix Xavier-uniform, the
        attention interaction's position embedding included (as
        documented; the ablation rows were trained so)."""
        torch.manual_seed(0)
        head = DIIHead(num_classes=3, in_channels=64, num_heads=2,
                       feedforward_channels=32,
                       dynamic_conv_cfg=dict(type='AttentionInteraction',
                                             num_heads=2))
        pos = head.instance_interactive_conv.pos_embed
        self.assertLess(float(pos.std()), 0.03)  # N(0, 0.02) standalone
        head.init_weights()
        bound = (6 / (49 + 64)) ** 0.5
        self.assertLessEqual(float(pos.abs().max()), bound)
        self.assertAlmostEqual(float(pos.std()), bound / 3**0.5, delta=0.02)
