import math
from unittest import TestCase

import torch

from mmdet_sparse.models import DIIHead, DynamicConv


def _naive_dynamic_conv(conv: DynamicConv, q: torch.Tensor,
                        r: torch.Tensor) -> torch.Tensor:
    """Per-proposal loop written straight from the paper's equations."""
    outs = []
    c_in, f, c_out = conv.in_channels, conv.feat_channels, conv.out_channels
    for qi, ri in zip(q, r):
        params = conv.dynamic_layer(qi)
        w1 = params[:c_in * f].view(c_in, f)
        w2 = params[c_in * f:].view(f, c_out)
        x = ri.flatten(1).t() @ w1
        x = torch.relu(conv.norm_in(x)) @ w2
        x = torch.relu(conv.norm_out(x)).reshape(-1)
        outs.append(torch.relu(conv.fc_norm(conv.fc_layer(x))))
    return torch.stack(outs)


class TestDynamicConv(TestCase):

    def test_matches_per_proposal_loop(self):
        torch.manual_seed(0)
        conv = DynamicConv(in_channels=16, feat_channels=4, input_feat_shape=3)
        q, r = torch.randn(5, 16), torch.randn(5, 16, 3, 3)
        out = conv(q, r)
        self.assertEqual(out.shape, (5, 16))
        torch.testing.assert_close(out, _naive_dynamic_conv(conv, q, r))

    def test_without_projection(self):
        conv = DynamicConv(
            in_channels=8, feat_channels=2, out_channels=6,
            input_feat_shape=2, with_proj=False)
        out = conv(torch.randn(3, 8), torch.randn(3, 8, 2, 2))
        self.assertEqual(out.shape, (3, 4, 6))


class TestDIIHead(TestCase):

    def _head(self, **kwargs):
        cfg = dict(
            num_classes=3,
            in_channels=32,
            feedforward_channels=64,
            num_heads=4,
            dynamic_conv_cfg=dict(
                type='DynamicConv',
                in_channels=32,
                feat_channels=8,
                out_channels=32,
                input_feat_shape=7))
        cfg.update(kwargs)
        head = DIIHead(**cfg)
        head.init_weights()
        return head

    def test_forward_shapes(self):
        head = self._head()
        cls, deltas, obj, attn = head(
            torch.randn(2 * 5, 32, 7, 7), torch.randn(2, 5, 32))
        self.assertEqual(cls.shape, (2, 5, 3))
        self.assertEqual(deltas.shape, (2, 5, 4))
        self.assertEqual(obj.shape, (2, 5, 32))
        self.assertEqual(attn.shape, (2, 5, 32))

    def test_softmax_head_has_background_logit(self):
        head = self._head(loss_cls=dict(type='CrossEntropyLoss',
                                        use_sigmoid=False))
        self.assertEqual(head.fc_cls.out_features, 4)
        scores = head.scores(torch.randn(2, 5, 4))
        self.assertEqual(scores.shape, (2, 5, 3))

    def test_init(self):
        head = self._head()
        prior = -math.log((1 - 0.01) / 0.01)
        self.assertTrue(torch.allclose(head.fc_cls.bias,
                                       torch.full((3, ), prior)))
        self.assertTrue(torch.all(head.fc_reg.bias == 0))
        self.assertTrue(torch.all(head.attention_norm.weight == 1))
        # Xavier-uniform bound for a (64, 32) matrix.
        bound = math.sqrt(6 / (32 + 64))
        w = head.ffn.layers[0][0].weight
        self.assertLessEqual(w.abs().max().item(), bound)
        self.assertGreater(w.abs().max().item(), 0.9 * bound)

    def test_default_parameter_count(self):
        self.assertEqual(
            sum(p.numel() for p in DIIHead().parameters()), 13_235_412)

    def test_decode_is_float32(self):
        head = self._head()
        boxes = torch.tensor([[[0., 0., 10., 20.]]])
        out = head.decode(boxes, torch.zeros(1, 1, 4, dtype=torch.bfloat16))
        self.assertEqual(out.dtype, torch.float32)
        self.assertTrue(torch.equal(out, boxes))

    def test_unknown_argument(self):
        with self.assertRaises(TypeError):
            DIIHead(num_fc=3)

    def test_decode_style_detectron2(self):
        # A whole-image proposal (800 x 600) shrinking onto a small object
        # needs dw, dh below -log(1000/16) = -4.135; MMDetection's decoding
        # clamps them there, the authors' only from above, at log(1e5/16).
        boxes = torch.tensor([[[0., 0., 800., 600.], [0., 0., 800., 600.],
                               [100., 50., 140., 90.]]])
        deltas = torch.tensor([[[0.4, 0., -5., -6.], [0., 0., 9., 1.],
                                [0., -0.2, 0.5, 0.]]])
        d2 = self._head(decode_style='detectron2').decode(boxes, deltas)[0]
        mmdet = self._head().decode(boxes, deltas)[0]

        def xyxy(cx, cy, w, h):
            return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]

        # Deltas are divided by the weights 1/std = (2, 2, 1, 1).
        torch.testing.assert_close(d2, torch.tensor([
            xyxy(400 + 0.2 * 800, 300, 800 * math.exp(-5),
                 600 * math.exp(-6)),
            xyxy(400, 300, 800 * 100000 / 16, 600 * math.exp(1)),
            xyxy(120, 70 - 0.1 * 40, 40 * math.exp(0.5), 40)]))
        torch.testing.assert_close(mmdet, torch.tensor([
            xyxy(560, 300, 800 * 16 / 1000, 600 * 16 / 1000),
            xyxy(400, 300, 800 * 1000 / 16, 600 * math.exp(1)),
            xyxy(120, 66, 40 * math.exp(0.5), 40)]))
        with self.assertRaisesRegex(ValueError, 'decode_style'):
            self._head(decode_style='d2')
        with self.assertRaisesRegex(ValueError, 'target_means'):
            self._head(
                decode_style='detectron2',
                bbox_coder=dict(type='DeltaXYWHBBoxCoder',
                                target_means=[0.1, 0., 0., 0.]))

    def test_decode_style_detectron2_is_bitwise_the_authors(self):
        # The authors' apply_deltas, column by column (weights 2, 2, 1, 1).
        gen = torch.Generator().manual_seed(0)
        xy = torch.rand(500, 2, generator=gen) * 700
        boxes = torch.cat([xy, xy + torch.rand(500, 2, generator=gen) * 300],
                          1)
        deltas = torch.randn(500, 4, generator=gen) * 3
        w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        cx, cy = boxes[:, 0] + 0.5 * w, boxes[:, 1] + 0.5 * h
        clamp = math.log(100000.0 / 16)
        pcx, pcy = deltas[:, 0] / 2.0 * w + cx, deltas[:, 1] / 2.0 * h + cy
        pw = torch.exp(torch.clamp(deltas[:, 2] / 1.0, max=clamp)) * w
        ph = torch.exp(torch.clamp(deltas[:, 3] / 1.0, max=clamp)) * h
        ref = torch.stack([pcx - 0.5 * pw, pcy - 0.5 * ph, pcx + 0.5 * pw,
                           pcy + 0.5 * ph], 1)
        ours = self._head(decode_style='detectron2').decode(boxes, deltas)
        self.assertTrue(torch.equal(ours, ref))
