"""Initial proposal boxes from the training set: k-means, the annotations
it reads and DatasetProposalInitHook."""
import logging
import time
from types import SimpleNamespace
from unittest import TestCase

import numpy as np
import torch

from mmdet_sparse.engine.proposal_init import (DatasetProposalInitHook,
                                               dataset_boxes, kmeans)
from mmdet_sparse.models import EmbeddingRPNHead


class _Dataset:
    """A dataset with ``get_data_info`` over the given infos."""

    def __init__(self, infos):
        self.infos = infos

    def __len__(self):
        return len(self.infos)

    def get_data_info(self, idx):
        return self.infos[idx]


def _info(boxes, width=100, height=50, ignore=()):
    return dict(width=width, height=height, instances=[
        dict(bbox=list(b), bbox_label=0, ignore_flag=int(i in ignore))
        for i, b in enumerate(boxes)])


def _clusters(num_per=200, seed=0):
    """Points around 4 well separated centres."""
    rng = np.random.default_rng(seed)
    centres = np.array([[.2, .2, .1, .1], [.8, .2, .3, .2],
                        [.2, .8, .2, .4], [.7, .7, .5, .5]])
    points = np.concatenate([c + rng.normal(0, 0.01, (num_per, 4))
                             for c in centres])
    return points, centres


class TestKMeans(TestCase):

    def test_finds_separated_clusters_reproducibly(self):
        points, centres = _clusters()
        found, info = kmeans(points, 4, seed=0)
        order = np.lexsort(np.round(found, 1).T[::-1])
        np.testing.assert_allclose(found[order],
                                   centres[np.lexsort(centres.T[::-1])],
                                   atol=0.005)
        again, _ = kmeans(points, 4, seed=0)
        np.testing.assert_array_equal(found, again)
        self.assertLess(info['inertia'], 1e-3)
        self.assertIsNone(info['fallback'])
        other, _ = kmeans(points + 0, 40, seed=1)
        self.assertFalse(np.array_equal(kmeans(points, 40, seed=0)[0],
                                        other))

    def test_fewer_unique_points_than_centres(self):
        points = np.array([[.5, .5, .2, .2]] * 5 + [[.1, .1, .1, .1]] * 3)
        found, info = kmeans(points, 5)
        self.assertEqual(found.shape, (5, 4))
        self.assertEqual(info['unique'], 2)
        self.assertEqual(info['fallback'], 'few_unique')
        self.assertEqual({tuple(r) for r in found},
                         {(.5, .5, .2, .2), (.1, .1, .1, .1)})
        exact, info = kmeans(points, 2)
        self.assertIsNone(info['fallback'])

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, 'empty'):
            kmeans(np.zeros((0, 4)), 3)
        with self.assertRaisesRegex(ValueError, 'positive'):
            kmeans(np.ones((3, 4)), 0)

    def test_timing_100k_boxes(self):
        rng = np.random.default_rng(0)
        points = rng.random((100_000, 4))
        start = time.perf_counter()
        found, info = kmeans(points, 100, seed=0)
        seconds = time.perf_counter() - start
        print(f'\nk-means of 100k boxes into 100 centres: {seconds:.2f} s '
              f"({info['iters']} iterations)")
        self.assertEqual(found.shape, (100, 4))
        self.assertLess(seconds, 120)


class TestDatasetBoxes(TestCase):

    def test_normalised_clipped_and_counted(self):
        dataset = _Dataset([
            _info([(10, 10, 30, 20), (90, 40, 120, 60), (5, 5, 5, 9),
                   (0, 0, 50, 25)], ignore=(3, )),
            dict(width=None, height=None,
                 instances=[dict(bbox=[0, 0, 1, 1], ignore_flag=0)]),
            _info([]),
        ])
        boxes, stats = dataset_boxes(dataset)
        np.testing.assert_allclose(boxes, [[.2, .3, .2, .2],
                                           [.95, .9, .1, .2]])
        self.assertEqual(stats, dict(images=3, no_size=1, boxes=2,
                                     ignored=1, clipped=1, degenerate=2))

    def test_wrappers_read_each_image_once(self):
        inner = _Dataset([_info([(10, 10, 30, 20)])])
        repeat = SimpleNamespace(dataset=inner, times=3)
        concat = SimpleNamespace(datasets=[repeat, inner])
        self.assertEqual(len(dataset_boxes(concat)[0]), 2)


def _runner(dataset, head, loaded=False, it=0, seed=None):
    logger = logging.getLogger('test_proposal_init')
    model = SimpleNamespace(rpn_head=head)
    return SimpleNamespace(
        model=model, _has_loaded=loaded, iter=it, seed=seed, logger=logger,
        train_dataloader=SimpleNamespace(dataset=dataset))


class TestDatasetProposalInitHook(TestCase):

    def _dataset(self):
        points, _ = _clusters(num_per=30)
        infos = []
        for cx, cy, w, h in points:
            infos.append(_info([(100 * (cx - w / 2), 50 * (cy - h / 2),
                                 100 * (cx + w / 2), 50 * (cy + h / 2))]))
        return _Dataset(infos)

    def test_sets_the_kmeans_boxes_and_logs(self):
        head = EmbeddingRPNHead(num_proposals=4, proposal_feature_channel=8,
                                init_boxes='dataset')
        hook = DatasetProposalInitHook(seed=3)
        with self.assertLogs('test_proposal_init', 'INFO') as logs:
            hook.before_train(_runner(self._dataset(), head))
        boxes = head.init_proposal_bboxes.weight.detach()
        expected, _ = kmeans(dataset_boxes(self._dataset())[0], 4, seed=3)
        torch.testing.assert_close(boxes, torch.from_numpy(expected).float())
        self.assertIn('k-means of 120 boxes', logs.output[0])
        self.assertIn('120 in the data', logs.output[0])
        self.assertRegex(logs.output[0], r'in \d+\.\d\d s')
        self.assertEqual(hook.last_stats['seed'], 3)
        # Another head, same seed: the same boxes (every process agrees).
        other = EmbeddingRPNHead(num_proposals=4,
                                 proposal_feature_channel=8,
                                 init_boxes='dataset')
        DatasetProposalInitHook(seed=3).before_train(
            _runner(self._dataset(), other))
        self.assertTrue(torch.equal(other.init_proposal_bboxes.weight,
                                    head.init_proposal_bboxes.weight))

    def test_large_datasets_are_sampled(self):
        head = EmbeddingRPNHead(num_proposals=4, proposal_feature_channel=8,
                                init_boxes='dataset')
        with self.assertLogs('test_proposal_init', 'INFO') as logs:
            DatasetProposalInitHook(seed=0, max_boxes=50).before_train(
                _runner(self._dataset(), head))
        self.assertIn('k-means of 50 boxes', logs.output[0])
        self.assertIn('120 in the data', logs.output[0])

    def test_seed_defaults_to_the_runs(self):
        head = EmbeddingRPNHead(num_proposals=4, proposal_feature_channel=8,
                                init_boxes='dataset')
        hook = DatasetProposalInitHook()
        hook.before_train(_runner(self._dataset(), head, seed=7))
        self.assertEqual(hook.last_stats['seed'], 7)

    def test_loaded_weights_are_kept(self):
        for kwargs in (dict(loaded=True), dict(it=10)):
            head = EmbeddingRPNHead(num_proposals=4,
                                    proposal_feature_channel=8,
                                    init_boxes='dataset')
            before = head.init_proposal_bboxes.weight.detach().clone()
            DatasetProposalInitHook().before_train(
                _runner(self._dataset(), head, **kwargs))
            self.assertTrue(torch.equal(head.init_proposal_bboxes.weight,
                                        before))

    def test_few_unique_boxes_fall_back_with_a_warning(self):
        head = EmbeddingRPNHead(num_proposals=4, proposal_feature_channel=8,
                                init_boxes='dataset')
        dataset = _Dataset([_info([(10, 10, 30, 20)])] * 3)
        with self.assertLogs('test_proposal_init', 'WARNING') as logs:
            DatasetProposalInitHook().before_train(_runner(dataset, head))
        self.assertIn('only 1 distinct', logs.output[-1])
        torch.testing.assert_close(
            head.init_proposal_bboxes.weight.detach(),
            torch.tensor([[.2, .3, .2, .2]]).expand(4, 4))

    def test_errors(self):
        head = EmbeddingRPNHead(num_proposals=4, proposal_feature_channel=8,
                                init_boxes='dataset')
        with self.assertRaisesRegex(ValueError, 'no usable box'):
            DatasetProposalInitHook().before_train(
                _runner(_Dataset([_info([])]), head))
        with self.assertRaisesRegex(ValueError, "init_boxes='dataset'"):
            DatasetProposalInitHook().before_train(_runner(
                self._dataset(), EmbeddingRPNHead(num_proposals=4)))
