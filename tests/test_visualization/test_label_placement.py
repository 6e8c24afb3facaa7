"""Tests of ``mmdet_sparse/visualization/label_placement.py``."""
import itertools
from unittest import TestCase

import numpy as np

from mmdet_sparse.visualization import boxes_overlap, place_labels


def _assert_clear(test, points, boxes, radius, gap=0.0):
    for a, b in itertools.combinations(boxes, 2):
        test.assertFalse(boxes_overlap(a, b, gap / 2), msg=(a, b))
    for box in boxes:
        for x, y in points:
            marker = (x - radius, y - radius, x + radius, y + radius)
            test.assertFalse(boxes_overlap(box, marker), msg=(box, x, y))


class TestLabelPlacement(TestCase):

    def test_overlap_predicate(self):
        self.assertTrue(boxes_overlap((0, 0, 2, 2), (1, 1, 3, 3)))
        self.assertFalse(boxes_overlap((0, 0, 1, 1), (1, 0, 2, 1)))  # touch
        self.assertTrue(boxes_overlap((0, 0, 1, 1), (1, 0, 2, 1), pad=0.1))
        self.assertFalse(boxes_overlap((0, 0, 1, 1), (0, 5, 1, 6)))

    def test_crowded_points_get_disjoint_labels(self):
        gen = np.random.default_rng(0)
        points = [tuple(p) for p in gen.uniform(0, 60, (25, 2))]
        points += [(30.0, 30.0)] * 3  # identical points
        sizes = [(gen.uniform(30, 90), 10.0) for _ in points]
        bounds = (-200.0, -200.0, 300.0, 300.0)
        boxes = place_labels(points, sizes, bounds, marker_radius=4, gap=2)
        self.assertEqual(len(boxes), len(points))
        _assert_clear(self, points, boxes, radius=4, gap=2)
        for box, (w, h) in zip(boxes, sizes):
            self.assertAlmostEqual(box[2] - box[0], w)
            self.assertAlmostEqual(box[3] - box[1], h)
            self.assertTrue(bounds[0] <= box[0] and box[2] <= bounds[2]
                            and bounds[1] <= box[1] and box[3] <= bounds[3])

    def test_a_lone_point_keeps_its_label_next_to_it(self):
        (box, ) = place_labels([(100.0, 100.0)], [(40.0, 10.0)],
                               marker_radius=4, gap=2)
        self.assertEqual(box, (106.0, 95.0, 146.0, 105.0))  # to the right

    def test_tight_bounds_fall_back_outside_without_overlap(self):
        points = [(5.0, 5.0)] * 4
        sizes = [(50.0, 10.0)] * 4
        boxes = place_labels(points, sizes, bounds=(0, 0, 10, 10),
                             max_rings=3)
        _assert_clear(self, points, boxes, radius=4, gap=2)

    def test_mismatched_lengths(self):
        with self.assertRaisesRegex(ValueError, '2 points but 1 label'):
            place_labels([(0, 0), (1, 1)], [(1, 1)])
