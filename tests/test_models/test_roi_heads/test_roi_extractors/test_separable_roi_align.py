from unittest import TestCase, mock

import torch
from torchvision.ops import roi_align

from mmdet_sparse.models.roi_heads.roi_extractors import separable_roi_align
from mmdet_sparse.models.roi_heads.roi_extractors.separable_roi_align import \
    roi_align_feature_grad


def _rois(gen, num, num_imgs, height, width, scale):
    """RoIs in image pixels: inside, across the border, wholly outside,
    thin and degenerate."""
    size = torch.tensor([width / scale, height / scale], dtype=torch.float64)
    xy = torch.rand(num, 2, generator=gen, dtype=torch.float64) * size * 1.4 \
        - 0.2 * size
    wh = torch.rand(num, 2, generator=gen, dtype=torch.float64) ** 2 * size
    img = torch.randint(0, num_imgs, (num, 1), generator=gen).double()
    rois = torch.cat([img, xy, xy + wh], 1)
    rois[0, 1:] = torch.tensor([-50., -40., -20., -25.])  # outside
    rois[1, 1:] = torch.tensor([3., 4., 3., 4.])  # zero size
    rois[2, 1:] = torch.tensor([0., 2., size[0].item() * 2, 2.5])  # thin
    return rois


class TestSeparableRoIAlignGrad(TestCase):

    def _check(self, shape, scale, sampling_ratio, aligned, num=30, seed=0):
        gen = torch.Generator().manual_seed(seed)
        feats = torch.randn(*shape, generator=gen, dtype=torch.float64,
                            requires_grad=True)
        rois = _rois(gen, num, shape[0], shape[2], shape[3], scale)
        out = roi_align(feats, rois, (7, 5), scale, sampling_ratio, aligned)
        grad_out = torch.randn(out.shape, generator=gen, dtype=torch.float64)
        out.backward(grad_out)
        ours = roi_align_feature_grad(grad_out, rois, feats.shape, scale,
                                      sampling_ratio, aligned)
        self.assertEqual(ours.shape, feats.shape)
        torch.testing.assert_close(ours, feats.grad, rtol=0, atol=1e-12)
        return ours

    def test_matches_torchvision_backward(self):
        for aligned in (True, False):
            for ratio in (1, 2, 3):
                for seed, (shape, scale) in enumerate(
                        [((2, 6, 13, 17), 0.25), ((3, 4, 9, 6), 0.5),
                         ((1, 3, 4, 4), 1.0)]):
                    with self.subTest(aligned=aligned, ratio=ratio,
                                      shape=shape):
                        self._check(shape, scale, ratio, aligned, seed=seed)

    def test_chunked_equals_one_chunk(self):
        whole = self._check((2, 8, 16, 16), 0.25, 2, True, num=50)
        with mock.patch.object(separable_roi_align, '_CHUNK_ELEMENTS', 64):
            chunked = self._check((2, 8, 16, 16), 0.25, 2, True, num=50)
        torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-12)

    def test_no_rois_gives_zeros(self):
        grad = roi_align_feature_grad(torch.zeros(0, 4, 7, 7),
                                      torch.zeros(0, 5), (2, 4, 8, 8), 0.5, 2,
                                      True)
        self.assertEqual(grad.shape, (2, 4, 8, 8))
        self.assertEqual(grad.abs().sum().item(), 0)

    def test_adaptive_sampling_is_refused(self):
        with self.assertRaisesRegex(ValueError, 'sampling_ratio'):
            roi_align_feature_grad(torch.zeros(1, 1, 7, 7),
                                   torch.zeros(1, 5), (1, 1, 8, 8), 1.0, 0,
                                   True)
