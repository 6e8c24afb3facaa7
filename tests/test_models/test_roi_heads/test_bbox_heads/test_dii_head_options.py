"""DIIHead's ablation options: self-attention off, positional encoding."""
import math
from unittest import TestCase

import torch

from mmdet_sparse.models import DIIHead
from mmdet_sparse.models.roi_heads.bbox_heads.dii_head import \
    box_sine_encoding

CFG = dict(num_classes=3, in_channels=32, feedforward_channels=64,
           num_heads=4,
           dynamic_conv_cfg=dict(type='DynamicConv', in_channels=32,
                                 feat_channels=8, out_channels=32))


def _head(**kwargs):
    torch.manual_seed(0)
    head = DIIHead(**dict(CFG, **kwargs))
    head.init_weights()
    return head


def _inputs(seed=0):
    gen = torch.Generator().manual_seed(seed)
    xy = torch.rand(2, 5, 2, generator=gen) * 0.5
    boxes = torch.cat([xy, xy + 0.1 + torch.rand(2, 5, 2, generator=gen) *
                       0.4], -1)
    return (torch.randn(10, 32, 7, 7, generator=gen),
            torch.randn(2, 5, 32, generator=gen), boxes)


class TestDIIHeadOptions(TestCase):

    def test_defaults_unchanged(self):
        head = _head()
        self.assertTrue(head.with_self_attn)
        self.assertFalse(head.pos_encoding)
        roi, feats, _ = _inputs()
        # The box argument is ignored without the encoding.
        a, b = head(roi, feats), head(roi, feats, torch.rand(2, 5, 4))
        for x, y in zip(a, b):
            self.assertTrue(torch.equal(x, y))

    def test_without_self_attention(self):
        ref = _head()
        head = _head(with_self_attn=False)
        keys = set(head.state_dict())
        self.assertFalse(any(k.startswith('attention') for k in keys))
        self.assertFalse(hasattr(head, 'attention'))
        # The same weights otherwise: loads strictly without the attention.
        head.load_state_dict({k: v for k, v in ref.state_dict().items()
                              if k in keys}, strict=True)
        roi, feats, _ = _inputs()
        cls_score, deltas, obj, attn = head(roi, feats)
        self.assertTrue(torch.equal(attn, feats))  # no attention applied
        ref_out = ref(roi, feats)
        self.assertFalse(torch.allclose(obj, ref_out[2]))
        # Proposals no longer see each other: proposal 0 ignores the rest.
        feats2 = feats.clone()
        feats2[:, 1:] += 1
        obj2 = head(roi, feats2)[2]
        torch.testing.assert_close(obj2[:, 0], obj[:, 0])
        self.assertFalse(torch.allclose(ref(roi, feats2)[2][:, 0],
                                        ref_out[2][:, 0]))

    def test_positional_encoding(self):
        ref, head = _head(), _head(pos_encoding=True)
        # No parameter of its own.
        self.assertEqual(set(head.state_dict()), set(ref.state_dict()))
        head.load_state_dict(ref.state_dict(), strict=True)
        roi, feats, boxes = _inputs()
        out = head(roi, feats, boxes)
        self.assertFalse(torch.allclose(out[2], ref(roi, feats)[2]))
        moved = head(roi, feats, boxes.flip(1))
        self.assertFalse(torch.allclose(out[2], moved[2]))
        # Exactly the encoding added to the features.
        enc = box_sine_encoding(boxes, 32)
        for x, y in zip(out, ref(roi, feats + enc)):
            torch.testing.assert_close(x, y)
        with self.assertRaisesRegex(ValueError, 'needs the normalised'):
            head(roi, feats)
        with self.assertRaisesRegex(ValueError, 'divisible by 8'):
            DIIHead(**dict(CFG, in_channels=20, pos_encoding=True))

    def test_box_sine_encoding(self):
        boxes = torch.tensor([[0.1, 0.2, 0.5, 0.6]])
        enc = box_sine_encoding(boxes, 16)
        self.assertEqual(enc.shape, (1, 16))
        # Per coordinate (cx, cy, w, h) = (0.3, 0.4, 0.4, 0.4): 2 sines
        # then 2 cosines at wavelengths 10000^(0, 1/2).
        angles = [v * 2 * math.pi / f for v in (0.3, 0.4, 0.4, 0.4)
                  for f in (1.0, 100.0)]
        ref = []
        for i in range(4):
            a = angles[2 * i:2 * i + 2]
            ref += [math.sin(x) for x in a] + [math.cos(x) for x in a]
        torch.testing.assert_close(enc[0], torch.tensor(ref))
