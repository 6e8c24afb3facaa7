"""The export path of the multi-level RoIAlign: same values as the eager
extractors, chosen only while a graph is captured."""
from unittest import TestCase, mock

import torch

from mmdet_sparse.models.roi_heads.roi_extractors import export_roi_align
from mmdet_sparse.registry import MODELS


def _extractor(type_, aligned=True):
    return MODELS.build(dict(
        type=type_,
        roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=2,
                       aligned=aligned),
        out_channels=8,
        featmap_strides=[4, 8, 16, 32]))


def _inputs(seed=0, num=40):
    gen = torch.Generator().manual_seed(seed)
    feats = [torch.randn(1, 8, 64 // s, 96 // s, generator=gen)
             for s in (1, 2, 4, 8)]
    xy = torch.rand(num, 2, generator=gen) * 400 - 40
    wh = torch.rand(num, 2, generator=gen) ** 2 * 700 + 0.5
    return feats, torch.cat([torch.zeros(num, 1), xy, xy + wh], 1)


class TestExportRoIAlign(TestCase):

    def test_export_forward_equals_eager_extractors(self):
        for aligned in (True, False):
            threaded = _extractor('ThreadedRoIExtractor', aligned)
            single = _extractor('mmdet.SingleRoIExtractor', aligned)
            for seed in range(2):
                feats, rois = _inputs(seed)
                levels = threaded.map_roi_levels(rois, 4)
                self.assertEqual(len(torch.unique(levels)), 4)
                out = threaded.export_forward(feats, rois)
                # the same kernel on the same RoIs: bit-identical
                torch.testing.assert_close(out, threaded(feats, rois),
                                           rtol=0, atol=0)
                torch.testing.assert_close(out, single(feats, rois),
                                           rtol=0, atol=0)

    def test_export_path_only_while_exporting(self):
        self.assertFalse(export_roi_align.is_exporting())
        threaded = _extractor('ThreadedRoIExtractor')
        feats, rois = _inputs()
        target = ('mmdet_sparse.models.roi_heads.roi_extractors.'
                  'threaded_roi_extractor.')
        with mock.patch(target + 'is_exporting', return_value=True), \
                mock.patch.object(threaded, 'export_forward',
                                  wraps=threaded.export_forward) as spy:
            threaded(feats, rois)
        spy.assert_called_once()

    def test_max_pooling_layer_is_refused(self):
        extractor = MODELS.build(dict(
            type='ThreadedRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=2,
                           pool_mode='max'),
            out_channels=8, featmap_strides=[4, 8]))
        feats, rois = _inputs()
        with self.assertRaisesRegex(NotImplementedError,
                                    "pool_mode='avg' only"):
            extractor.export_forward(feats[:2], rois)
