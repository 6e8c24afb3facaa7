from unittest import TestCase

import torch

from support.helpers import data_samples, fpn_features
from mmdet_sparse.models import EmbeddingRPNHead


class TestEmbeddingRPNHead(TestCase):

    def test_whole_image_boxes_without_init_weights(self):
        head = EmbeddingRPNHead(num_proposals=7, proposal_feature_channel=16)
        samples = data_samples([(60, 90), (40, 30)], [1, 1])
        results = head.predict(fpn_features([(60, 90), (40, 30)], 16),
                               samples)
        self.assertEqual(len(results), 2)
        expected = torch.tensor([[0., 0., 90., 60.], [0., 0., 30., 40.]])
        for res, box in zip(results, expected):
            self.assertEqual(res.bboxes.shape, (7, 4))
            self.assertEqual(res.features.shape, (7, 16))
            self.assertTrue(torch.equal(res.bboxes, box.expand(7, 4)))

    def test_results_carry_imgs_whwh(self):
        """MMDetection's SparseRoIHead reads ``imgs_whwh`` ``(N, 4)``."""
        head = EmbeddingRPNHead(num_proposals=3, proposal_feature_channel=4)
        samples = data_samples([(60, 90), (40, 30)], [1, 1])
        results = head.predict(None, samples)
        for res, (h, w) in zip(results, [(60, 90), (40, 30)]):
            self.assertTrue(torch.equal(
                res.imgs_whwh, torch.tensor([[w, h, w, h]]).float().expand(
                    3, 4)))
            self.assertEqual(len(res), 3)
        _, results = head.loss_and_predict(None, samples)
        self.assertIn('imgs_whwh', results[0])

    def test_init_weights_resets_boxes_keeps_features(self):
        torch.manual_seed(0)
        head = EmbeddingRPNHead(num_proposals=5, proposal_feature_channel=8)
        with torch.no_grad():
            head.init_proposal_bboxes.weight.uniform_()
        feats = head.init_proposal_features.weight.clone()
        head.init_weights()
        self.assertTrue(
            torch.equal(head.init_proposal_bboxes.weight,
                        torch.tensor([[0.5, 0.5, 1., 1.]]).expand(5, 4)))
        self.assertTrue(torch.equal(head.init_proposal_features.weight, feats))

    def test_gradient_reaches_embeddings(self):
        head = EmbeddingRPNHead(num_proposals=3, proposal_feature_channel=4)
        boxes, feats = head([dict(img_shape=(10, 20))])
        (boxes.sum() + feats.sum()).backward()
        self.assertTrue(
            torch.equal(head.init_proposal_bboxes.weight.grad[0],
                        torch.tensor([40., 20., 0., 0.])))
        grad = head.init_proposal_features.weight.grad
        self.assertTrue(torch.all(grad == 1))

    def test_loss_and_predict_has_no_loss(self):
        head = EmbeddingRPNHead(num_proposals=2)
        losses, results = head.loss_and_predict(
            None, data_samples([(32, 32)], [1]))
        self.assertEqual(losses, {})
        self.assertEqual(len(results), 1)
        with self.assertRaises(NotImplementedError):
            head.loss()

    def test_grid_boxes(self):
        for num in (1, 9, 40):
            head = EmbeddingRPNHead(num_proposals=num,
                                    proposal_feature_channel=4,
                                    init_boxes='grid')
            side = {1: 1, 9: 3, 40: 7}[num]
            boxes = head([dict(img_shape=(70, 140))])[0][0]
            centres = (boxes[:, :2] + boxes[:, 2:]) / 2
            # Distinct cell centres, on the k x k lattice of the image.
            cells = torch.round(centres / torch.tensor([140., 70.]) * side -
                                0.5)
            torch.testing.assert_close(
                centres, (cells + 0.5) / side * torch.tensor([140., 70.]))
            self.assertEqual(len({tuple(c) for c in cells.tolist()}), num)
            self.assertTrue(bool((cells >= 0).all() and (cells < side).all()))
            # Corners of the image are covered by the first and last cells.
            self.assertEqual(cells[0].tolist(), [0, 0])
            self.assertEqual(cells[-1].tolist(), [side - 1, side - 1])
            size = min(1.0, 2 / side) * torch.tensor([140., 70.])
            torch.testing.assert_close(boxes[:, 2:] - boxes[:, :2],
                                       size.expand(num, 2))
            head.init_proposal_bboxes.weight.data.zero_()
            head.init_weights()
            torch.testing.assert_close(
                head([dict(img_shape=(70, 140))])[0][0], boxes)

    def test_bad_arguments(self):
        with self.assertRaises(ValueError):
            EmbeddingRPNHead(init_boxes='bogus')
        with self.assertRaises(ValueError):
            EmbeddingRPNHead(num_proposals=0)
        with self.assertRaises(ValueError):
            EmbeddingRPNHead(init_cfg=dict(type='Normal'))
