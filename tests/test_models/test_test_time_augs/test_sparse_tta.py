"""SparseRCNNTTAModel: per-view size filter (in the view's resized image),
flip undone before merging, merge, clipping and the detection cap."""
import os.path as osp
from unittest import TestCase

import torch
from support.helpers import CONFIG_DIR
from mmengine.config import Config
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData
from torch import nn

from mmdet_sparse.models.test_time_augs import SparseRCNNTTAModel
from mmdet_sparse.registry import MODELS


def _view(boxes, scores, labels, scale, scale_factor, flip=False,
          ori_shape=(100, 200)):
    sample = DetDataSample(metainfo=dict(
        img_id=7, ori_shape=ori_shape, scale=scale,
        scale_factor=scale_factor, flip=flip,
        flip_direction='horizontal' if flip else None))
    sample.pred_instances = InstanceData(
        bboxes=torch.tensor(boxes, dtype=torch.float32),
        scores=torch.tensor(scores), labels=torch.tensor(labels))
    return sample


class _Detector(nn.Module):
    """Stands in for the detector: these tests call the merge directly."""

    def test_step(self, data):
        raise AssertionError('the merge tests run no detector')


class TestSparseRCNNTTAModel(TestCase):

    def _model(self, **kwargs):
        return SparseRCNNTTAModel(module=_Detector(), **kwargs)

    def test_registered_in_this_scope(self):
        model = MODELS.build(dict(type='SparseRCNNTTAModel',
                                  module=_Detector(), max_per_img=7))
        self.assertIsInstance(model, SparseRCNNTTAModel)
        self.assertEqual(model.max_per_img, 7)

    def test_configs_give_every_view_a_size_range(self):
        models = {}
        for name, views, max_per_img in (
                ('sparse_rcnn_r50_fpn_300pro_crop_3x_coco_tta.py', 26, 300),
                ('sparse_rcnn_x101_32x4d_dcn_fpn_300pro_crop_3x_coco_tta.py',
                 26, 300),
                ('sparse_rcnn_r18_fpn_shapes_demo_tta.py', 12, 40)):
            cfg = Config.fromfile(osp.join(CONFIG_DIR, name))
            model = self._model(**{k: v for k, v in cfg.tta_model.items()
                                   if k != 'type'})
            self.assertEqual(model.max_per_img, max_per_img)
            models[name] = model
            resizes, flips, pack = cfg.tta_pipeline[-1].transforms
            self.assertEqual(len(resizes) * len(flips), views, name)
            self.assertEqual(sorted(f.prob for f in flips), [0., 1.])
            self.assertTrue({'scale', 'flip', 'flip_direction'} <=
                            set(pack[0].meta_keys))
            for resize in resizes:
                meta = dict(scale=resize.scale, scale_factor=(1., 1.))
                model.size_keep(torch.zeros(1, 4), meta)  # has a range
        # The paper's: 800 keeps all, 400 only sqrt(area) > 96, 1800 < 96.
        ranges = models['sparse_rcnn_r50_fpn_300pro_crop_3x_coco_tta.py'] \
            .size_ranges
        self.assertEqual(ranges[(800, 4000)], (0, 10000))
        self.assertEqual(ranges[(400, 4000)], (96, 10000))
        self.assertEqual(ranges[(1800, 4000)], (0, 96))

    def test_size_filter_in_the_resized_image(self):
        model = self._model(size_ranges=[
            dict(scale=(4000, 400), range=(96, 10000)),
            dict(scale=[1800, 4000], range=(0, 96))])
        # Original-image boxes; the view was resized by 0.5 in x, 1 in y.
        boxes = torch.tensor([[0., 0., 200., 100.],  # 100 x 100 there
                              [0., 0., 190., 96.],  # 95 x 96 = 9120
                              [0., 0., 192., 96.],  # 96 x 96: not > 96^2
                              [0., 0., 196., 95.]])  # 98 x 95 = 9310
        meta = dict(scale=(400, 4000), scale_factor=(0.5, 1.0))
        self.assertEqual(model.size_keep(boxes, meta).tolist(),
                         [True, False, False, True])
        # The large-scale view keeps the complement (96^2 itself in neither).
        meta = dict(scale=(4000, 1800), scale_factor=(0.5, 1.0))
        self.assertEqual(model.size_keep(boxes, meta).tolist(),
                         [False, True, False, False])
        # No ranges: everything stays.
        self.assertTrue(self._model().size_keep(boxes, {}).all())

    def test_size_filter_errors_name_the_problem(self):
        model = self._model(size_ranges=[
            dict(scale=(4000, 400), range=(96, 10000))])
        boxes = torch.zeros(1, 4)
        with self.assertRaisesRegex(KeyError, "add 'scale' to PackDetInputs"):
            model.size_keep(boxes, dict(scale_factor=(1., 1.)))
        with self.assertRaisesRegex(KeyError,
                                    r'a.jpg has Resize scale \(4000, 500'):
            model.size_keep(boxes, dict(scale=(4000, 500), img_path='a.jpg',
                                        scale_factor=(1., 1.)))
        with self.assertRaisesRegex(ValueError, 'need 0 <= min < max'):
            self._model(size_ranges=[dict(scale=(1, 2), range=(5, 5))])
        with self.assertRaisesRegex(ValueError, 'range=\\(min_size'):
            self._model(size_ranges=[dict(scale=(1, 2), size=(0, 5))])

    def test_flip_undone_filter_merge_clip(self):
        model = self._model(
            max_per_img=3,
            size_ranges=[dict(scale=(256, 256), range=(0, 10000)),
                         dict(scale=(512, 512), range=(0, 200))])
        # Image 200 wide, 100 high. The same object seen in an unflipped
        # view and in a flipped one (x -> 200 - x): one box after merging.
        plain = _view([[10., 20., 40., 60.], [150., 0., 230., 50.]],
                      [0.9, 0.3], [1, 2], (256, 256), (1.28, 1.28))
        flipped = _view([[160., 20., 190., 60.], [0., 0., 100., 100.],
                         [50., 50., 60., 60.]],
                        [0.7, 0.95, 0.2], [1, 1, 0], (512, 512),
                        (2.56, 2.56), flip=True)
        merged = model._merge_single_sample([plain, flipped])
        pred = merged.pred_instances
        # The 100 x 100 box is 256 px in the 2.56x view: filtered out. The
        # two views of the object coincide: the merge is that box, score
        # 0.9; its partner has IoU 1, so no decayed copy.
        torch.testing.assert_close(
            pred.bboxes,
            torch.tensor([[10., 20., 40., 60.],
                          [150., 0., 200., 50.],  # clipped to the width
                          [140., 50., 150., 60.]]))  # un-flipped
        torch.testing.assert_close(pred.scores, torch.tensor([0.9, 0.3,
                                                              0.2]))
        self.assertEqual(pred.labels.tolist(), [1, 2, 0])
        self.assertEqual(merged.metainfo['img_id'], 7)

        # The cap keeps the best: one detection.
        model.max_per_img = 1
        merged = model._merge_single_sample([plain, flipped])
        torch.testing.assert_close(merged.pred_instances.scores,
                                   torch.tensor([0.9]))

    def test_merge_preds_per_image(self):
        model = self._model()
        a = _view([[0., 0., 10., 10.]], [0.5], [0], (1, 1), (1., 1.))
        b = _view([[0., 0., 20., 20.]], [0.6], [0], (1, 1), (1., 1.))
        out = model.merge_preds([[a], [b]])
        self.assertEqual([s.pred_instances.bboxes[0, 2].item() for s in out],
                         [10., 20.])
