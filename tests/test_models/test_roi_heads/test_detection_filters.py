from unittest import TestCase

import torch

from mmdet_sparse.models.roi_heads.detection_filters import filter_detections


class TestDetectionFilters(TestCase):

    def setUp(self):
        # Two images: original 100 x 200 (h x w), resized 50 x 100.
        self.metas = [dict(ori_shape=(100, 200), img_shape=(50, 100))] * 2
        self.boxes = torch.tensor([
            [[-10., 5., 50., 120.],  # crosses the left and bottom borders
             [190., 90., 250., 130.],  # crosses the right/bottom corner
             [210., 10., 260., 50.],  # wholly right of the image: dropped
             [20., 30., 20., 60.],  # no width: dropped
             [5., 5., 15., 15.]],  # inside
            [[0., 0., 200., 100.], [-5., -5., -1., 10.], [1., 1., 2., 2.],
             [40., 60., 80., 99.], [50., 50., 60., 50.]]])
        self.scores = torch.tensor([[.9, .8, .7, .6, .5], [.9, .3, .2, .2,
                                                           .1]])

    def test_off_by_default(self):
        boxes, keep = filter_detections(self.boxes, self.scores, self.metas,
                                        dict(max_per_img=5), True)
        self.assertIsNone(keep)
        self.assertTrue(torch.equal(boxes, self.boxes))

    def test_clip_to_image(self):
        boxes, keep = filter_detections(self.boxes, self.scores, self.metas,
                                        dict(clip_to_image=True), True)
        self.assertEqual(boxes[0].tolist(), [
            [0., 5., 50., 100.], [190., 90., 200., 100.],
            [200., 10., 200., 50.], [20., 30., 20., 60.], [5., 5., 15., 15.]
        ])
        self.assertEqual(keep.tolist(), [[True, True, False, False, True],
                                         [True, False, True, True, False]])
        # Without rescale the boxes are in resized-image pixels.
        boxes, keep = filter_detections(self.boxes, self.scores, self.metas,
                                        dict(clip_to_image=True), False)
        self.assertEqual(boxes[1, 0].tolist(), [0., 0., 100., 50.])
        self.assertEqual(keep[1].tolist(), [True, False, True, False, False])

    def test_score_thr(self):
        _, keep = filter_detections(self.boxes, self.scores, self.metas,
                                    dict(score_thr=0.2), True)
        # Strictly above the threshold (MMDetection's convention).
        self.assertEqual(keep.tolist(), [[True] * 5,
                                         [True, True, False, False, False]])
        _, keep = filter_detections(self.boxes, self.scores, self.metas,
                                    dict(score_thr=0.2, clip_to_image=True),
                                    True)
        self.assertEqual(keep.tolist(), [[True, True, False, False, True],
                                         [True, False, False, False, False]])
