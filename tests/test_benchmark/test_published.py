"""Tests of ``mmdet_sparse/benchmark/published.py``."""
import os.path as osp
from unittest import TestCase

from support.benchmark_fakes import REPO

from mmdet_sparse.benchmark import PUBLISHED_AP, ap_cell, refresh_published_ap


class TestPublished(TestCase):

    def test_published_ap_sources(self):
        zoo = {'sparse_rcnn_r50_fpn_1x_coco': 37.9,
               'sparse_rcnn_r50_fpn_3x_coco': 42.8,
               'sparse_rcnn_r50_fpn_300pro_crop_3x_coco': 45.0,
               'sparse_rcnn_r101_fpn_3x_coco': 44.2,
               'sparse_rcnn_r101_fpn_300pro_crop_3x_coco': 46.2,
               'sparse_rcnn_swin_t_fpn_3x_coco': 47.9,
               'sparse_rcnn_pvtv2_b2_fpn_3x_coco': 45.7,
               'sparse_rcnn_deit_adapter_small_fpn_3x_coco': 48.1}
        self.assertEqual({k: v['ap'] for k, v in PUBLISHED_AP.items()}, zoo)
        for name, entry in PUBLISHED_AP.items():
            self.assertTrue(
                osp.isfile(osp.join(REPO, 'configs', name + '.py')), name)
            self.assertTrue(entry['source'])
            if not entry['same_setting']:
                self.assertTrue(entry['note'], name)

    def test_refresh_and_cell(self):
        stale = dict(config='sparse_rcnn_r50_fpn_3x_coco',
                     published_ap=dict(ap=1.0, source='old'))
        fresh = refresh_published_ap(stale)
        self.assertEqual(fresh['published_ap']['ap'], 42.8)
        self.assertEqual(stale['published_ap']['ap'], 1.0)  # not modified
        self.assertEqual(ap_cell(fresh), '42.8')
        gone = refresh_published_ap(dict(config='model_a', published_ap={}))
        self.assertNotIn('published_ap', gone)
        self.assertEqual(ap_cell(gone), '-')
        swin = refresh_published_ap(
            dict(config='sparse_rcnn_swin_t_fpn_3x_coco'))
        self.assertEqual(ap_cell(swin), '47.9*')
