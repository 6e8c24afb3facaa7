"""Initial proposal boxes of EmbeddingRPNHead (the paper's Table 6)."""
import warnings
from unittest import TestCase

import torch

from mmdet_sparse.models import EmbeddingRPNHead
from mmdet_sparse.models.dense_heads.embedding_rpn_head import INIT_BOXES

META = [dict(img_shape=(60, 80))]


def _boxes(head):
    """Normalised ``(cx, cy, w, h)`` ``(N, 4)``."""
    return head.init_proposal_bboxes.weight.detach().clone()


class TestInitBoxes(TestCase):

    def test_every_kind_is_valid_and_survives_init_weights(self):
        for kind in INIT_BOXES:
            head = EmbeddingRPNHead(num_proposals=7,
                                    proposal_feature_channel=4,
                                    init_boxes=kind)
            boxes = _boxes(head)
            self.assertEqual(boxes.shape, (7, 4))
            self.assertTrue(bool((boxes[:, :2] >= 0).all()))
            self.assertTrue(bool((boxes[:, :2] <= 1).all()))
            self.assertTrue(bool((boxes[:, 2:] > 0).all()))
            self.assertTrue(bool((boxes[:, 2:] <= 1).all()))
            head.init_proposal_bboxes.weight.data.zero_()
            head.init_weights()
            self.assertTrue(torch.equal(_boxes(head), boxes), kind)

    def test_center(self):
        head = EmbeddingRPNHead(num_proposals=3, init_boxes='center')
        pixels = head(META)[0][0]
        expected = torch.tensor([40 - 4, 30 - 3, 40 + 4, 30 + 3.])
        torch.testing.assert_close(pixels, expected.expand(3, 4))

    def test_kinds_differ(self):
        boxes = {kind: _boxes(EmbeddingRPNHead(num_proposals=16,
                                               init_boxes=kind))
                 for kind in ('image', 'center', 'grid', 'random')}
        kinds = list(boxes)
        for i, a in enumerate(kinds):
            for b in kinds[i + 1:]:
                self.assertFalse(torch.equal(boxes[a], boxes[b]), (a, b))

    def test_random_is_seeded_and_spread(self):
        torch.manual_seed(123)
        a = _boxes(EmbeddingRPNHead(num_proposals=50, init_boxes='random'))
        torch.manual_seed(456)
        b = _boxes(EmbeddingRPNHead(num_proposals=50, init_boxes='random'))
        c = _boxes(EmbeddingRPNHead(num_proposals=50, init_boxes='random',
                                    init_seed=1))
        self.assertTrue(torch.equal(a, b))  # global RNG does not matter
        self.assertFalse(torch.equal(a, c))
        self.assertGreater(a.std(0).min().item(), 0.1)  # not all alike
        self.assertGreaterEqual(a[:, 2:].min().item(), 0.02)

    def test_dataset_boxes_are_set_and_stored_in_the_weights(self):
        head = EmbeddingRPNHead(num_proposals=2, proposal_feature_channel=4,
                                init_boxes='dataset')
        # Until set: the whole image.
        torch.testing.assert_close(
            _boxes(head), torch.tensor([[.5, .5, 1., 1.]]).expand(2, 4))
        new = torch.tensor([[0.2, 0.3, 0.1, 0.2], [0.7, 0.6, 0.4, 0.3]])
        head.set_proposal_boxes(new)
        self.assertTrue(torch.equal(_boxes(head), new))
        other = EmbeddingRPNHead(num_proposals=2, proposal_feature_channel=4,
                                 init_boxes='dataset')
        other.load_state_dict(head.state_dict(), strict=True)
        self.assertTrue(torch.equal(_boxes(other), new))
        with self.assertRaisesRegex(ValueError, 'expected'):
            head.set_proposal_boxes(torch.zeros(3, 4))
        with self.assertRaisesRegex(ValueError, 'positive'):
            head.set_proposal_boxes(torch.zeros(2, 4))

    def test_dataset_boxes_never_set_warns_once_in_training(self):
        head = EmbeddingRPNHead(num_proposals=2, proposal_feature_channel=4,
                                init_boxes='dataset')
        head.eval()(META)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            head.train()(META)
            head(META)
        self.assertEqual(
            sum('DatasetProposalInitHook' in str(w.message)
                for w in caught), 1)
        loaded = EmbeddingRPNHead(num_proposals=2,
                                  proposal_feature_channel=4,
                                  init_boxes='dataset')
        loaded.load_state_dict(head.state_dict())
        with warnings.catch_warnings():
            warnings.simplefilter('error')
            loaded.train()(META)

    def test_unknown_kind(self):
        with self.assertRaisesRegex(ValueError, 'init_boxes'):
            EmbeddingRPNHead(init_boxes='corners')
