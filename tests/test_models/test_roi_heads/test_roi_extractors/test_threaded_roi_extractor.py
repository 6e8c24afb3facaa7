from unittest import TestCase, mock

import torch
from mmcv.ops import roi_align

from mmdet_sparse.models.roi_heads.roi_extractors import \
    threaded_roi_extractor
from mmdet_sparse.registry import MODELS


def _extractor(type_, **kwargs):
    cfg = dict(
        type=type_,
        roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=2),
        out_channels=8,
        featmap_strides=[4, 8, 16, 32])
    cfg['roi_layer'].update(kwargs.pop('roi_layer', {}))
    cfg.update(kwargs)
    return MODELS.build(cfg)


def _inputs(seed=0, num=40):
    gen = torch.Generator().manual_seed(seed)
    feats = [torch.randn(2, 8, 64 // s, 96 // s, generator=gen)
             for s in (1, 2, 4, 8)]
    # Boxes of every level, some partly or wholly outside the image.
    xy = torch.rand(num, 2, generator=gen) * 400 - 40
    wh = torch.rand(num, 2, generator=gen) ** 2 * 380 + 0.5
    img = torch.randint(0, 2, (num, 1), generator=gen).float()
    return feats, torch.cat([img, xy, xy + wh], 1)


class TestThreadedRoIExtractor(TestCase):

    def _compare(self, ours, ref, seed=0):
        feats, rois = _inputs(seed)
        outs, grads = [], []
        for module in (ref, ours):
            leaves = [f.clone().requires_grad_() for f in feats]
            out = module(leaves, rois)
            out.backward(torch.linspace(-1, 1, out.numel()).view_as(out))
            outs.append(out.detach())
            grads.append([f.grad for f in leaves])
        return outs, grads

    def _assert_grads_close(self, ours, ref):
        for a, b in zip(ours, ref):
            if a is None:  # a level without RoIs: no gradient, zero in ref
                self.assertEqual(b.abs().sum().item(), 0)
                continue
            # Same sums in another order: float32 rounding only.
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5 *
                                       b.abs().max().clamp(min=1).item())

    def test_bit_identical_forward_close_backward(self):
        ours = _extractor('ThreadedRoIExtractor', num_threads=2)
        ref = _extractor('mmdet.SingleRoIExtractor')
        # Backward routes RoIs by window size: all separable, mixed, all
        # through the sampling kernel.
        for limit in (10**6, 40, 0):
            for seed in range(3):
                with self.subTest(limit=limit, seed=seed), mock.patch.object(
                        threaded_roi_extractor, 'MAX_SEPARABLE_WINDOW',
                        limit):
                    (ref_out, our_out), (ref_g, our_g) = self._compare(
                        ours, ref, seed)
                    self.assertTrue(torch.equal(our_out, ref_out))
                    self._assert_grads_close(our_g, ref_g)

    def test_not_aligned(self):
        ours = _extractor('ThreadedRoIExtractor', num_threads=2,
                          roi_layer=dict(aligned=False))
        ref = _extractor('mmdet.SingleRoIExtractor',
                         roi_layer=dict(aligned=False))
        (ref_out, our_out), (ref_g, our_g) = self._compare(ours, ref)
        self.assertTrue(torch.equal(our_out, ref_out))
        self._assert_grads_close(our_g, ref_g)

    def test_unused_image_zero_unused_level_no_gradient(self):
        ours = _extractor('ThreadedRoIExtractor', num_threads=2)
        rois = torch.tensor([[0., 10., 10., 30., 30.],
                             [0., 5., 5., 20., 25.]])  # image 0, level 0
        for limit in (10**6, 0):
            with self.subTest(limit=limit), mock.patch.object(
                    threaded_roi_extractor, 'MAX_SEPARABLE_WINDOW', limit):
                feats = [f.requires_grad_() for f in _inputs()[0]]
                ours(feats, rois).sum().backward()
                self.assertGreater(feats[0].grad[0].abs().sum(), 0)
                self.assertEqual(feats[0].grad[1].abs().sum().item(), 0)
                for feat in feats[1:]:
                    self.assertIsNone(feat.grad)

    def test_falls_back_to_parent(self):
        adaptive = _extractor('ThreadedRoIExtractor',
                              roi_layer=dict(sampling_ratio=0))
        self.assertFalse(adaptive._threadable)
        one_thread = _extractor('ThreadedRoIExtractor', num_threads=1)
        ref = _extractor('mmdet.SingleRoIExtractor')
        feats, rois = _inputs()
        self.assertTrue(torch.equal(one_thread(feats, rois), ref(feats, rois)))

    def test_level_rule_detectron2(self):
        # Squares a few float32 ulps below 112 and 224 px: MMDetection's
        # floor(log2(s / 56 + 1e-6)) puts them on the upper level, the
        # authors' floor(4 + log2(s / 224 + 1e-8)) - 2 on the lower one.
        sides = [111.99997711181640625, 111.99994659423828125,
                 223.99996948242188, 50., 112., 300.]
        rois = torch.tensor([[0., 0., 0., s, s] for s in sides])
        mmdet = _extractor('ThreadedRoIExtractor')
        d2 = _extractor('ThreadedRoIExtractor', level_rule='detectron2')
        self.assertEqual(mmdet.map_roi_levels(rois, 4).tolist(),
                         [1, 1, 2, 0, 1, 2])
        self.assertEqual(d2.map_roi_levels(rois, 4).tolist(),
                         [0, 0, 1, 0, 1, 2])
        # The pooled features follow the level, on both forward paths.
        feats, _ = _inputs()
        for threads in (1, 2):
            d2.num_threads = mmdet.num_threads = threads
            for module, level in ((d2, 0), (mmdet, 1)):
                expected = roi_align(feats[level], rois[:1], (7, 7),
                                     1 / 4 / 2**level, 2, 'avg', True)
                self.assertTrue(torch.equal(module(feats, rois)[:1],
                                            expected))
        with self.assertRaisesRegex(ValueError, 'level_rule'):
            _extractor('ThreadedRoIExtractor', level_rule='d2')

    def test_float16_features_pool_float32_levels_and_points(self):
        """AMP: float16 features give float32's levels and values, for boxes
        up to 1333 px (float16 areas overflow above 65504 px²)."""
        gen = torch.Generator().manual_seed(5)
        feats = [torch.randn(1, 8, 1344 // s, 1344 // s, generator=gen)
                 for s in (4, 8, 16, 32)]
        half = [f.half() for f in feats]
        exact = [f.float() for f in half]  # the same values, in float32
        # Squares of 300 px (level 2 in float32, 3 if the area overflows)
        # at coordinates above 512 px, and sizes up to 1333 px.
        sides = torch.tensor([300., 256.5, 600.25, 1333., 40.75, 700.5])
        x0 = torch.tensor([513.3, 700.7, 20.1, 0.0, 1000.9, 611.6])
        rois = torch.stack([torch.zeros(6), x0, x0 / 2, x0 + sides,
                            x0 / 2 + sides], 1)
        for rule in ('mmdet', 'detectron2'):
            for threads in (1, 2):
                with self.subTest(rule=rule, threads=threads):
                    module = _extractor('ThreadedRoIExtractor',
                                        num_threads=threads, level_rule=rule)
                    self.assertEqual(
                        module.map_roi_levels(rois.half(), 4).tolist(),
                        module.map_roi_levels(rois, 4).tolist())
                    out = module(half, rois)
                    self.assertEqual(out.dtype, torch.float16)
                    self.assertTrue(torch.equal(
                        out, module(exact, rois).half()))
        self.assertEqual(module.map_roi_levels(rois, 4)[0].item(), 2)

    def test_float16_gradient_reaches_float16_features(self):
        module = _extractor('ThreadedRoIExtractor', num_threads=2)
        feats, rois = _inputs()
        half = [f.half().requires_grad_() for f in feats]
        module(half, rois).float().sum().backward()
        exact = [f.half().float().requires_grad_() for f in feats]
        module(exact, rois).sum().backward()
        for h, e in zip(half, exact):
            if e.grad is None:
                self.assertIsNone(h.grad)
                continue
            self.assertEqual(h.grad.dtype, torch.float16)
            self.assertTrue(torch.equal(h.grad, e.grad.half()))

    def test_other_devices_use_the_parent(self):
        """Tensors of a device other than the CPU (here ``meta``, standing
        in for MPS/XPU/NPU) must not reach the CPU thread pool."""
        module = _extractor('ThreadedRoIExtractor', num_threads=2)
        feats = [torch.empty(2, 8, 16, 16, device='meta') for _ in range(4)]
        rois = torch.zeros(3, 5, device='meta')
        parent = mock.Mock(return_value=torch.empty(3, 8, 7, 7,
                                                    device='meta'))
        with mock.patch.object(threaded_roi_extractor.SingleRoIExtractor,
                               'forward', parent), mock.patch.object(
                threaded_roi_extractor._ThreadedRoIAlign, 'apply') as pool:
            module(feats, rois)
        pool.assert_not_called()
        parent.assert_called_once()
