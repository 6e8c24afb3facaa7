"""Tests of ``mmdet_sparse/visualization/stage_figure.py`` on a hand-made
stage trace (no model)."""
import os
import tempfile
from unittest import TestCase

import numpy as np
from matplotlib.patches import Rectangle
from PIL import Image

from mmdet_sparse.visualization import (TITLE_PX, StageBoxes, StageTrace,
                                        boxes_above, proposal_colors,
                                        proposal_figure, save_figure,
                                        stage_figure)


def _trace(num: int = 6, h: int = 60, w: int = 90) -> StageTrace:
    gen = np.random.default_rng(0)
    xy = gen.uniform(0, 40, (num, 2))
    wh = gen.uniform(5, 40, (num, 2))
    boxes = np.concatenate([xy, xy + wh], 1)
    stages = [
        # 0.3 itself is not above the threshold; 0.31 and 0.9 are.
        StageBoxes(boxes, np.array([0.1, 0.3, 0.31, 0.9, 0.0, 0.29]),
                   np.zeros(num, int)),
        StageBoxes(boxes + 1, np.array([0.5, 0.6, 0.2, 0.05, 0.7, 0.8]),
                   np.ones(num, int)),
        StageBoxes(boxes + 2, np.zeros(num), np.zeros(num, int)),
    ]
    image = gen.integers(0, 255, (h, w, 3), dtype=np.uint8)
    return StageTrace(image, boxes - 3, stages, ('a', 'b'))


def _rects(ax):
    return [p for p in ax.patches if isinstance(p, Rectangle)]


def _xyxy(rect):
    x, y = rect.get_xy()
    return [x, y, x + rect.get_width(), y + rect.get_height()]


class TestStageFigure(TestCase):

    def test_stage_panels_draw_exactly_the_boxes_above_the_threshold(self):
        trace = _trace()
        fig, drawn = stage_figure(trace, score_thr=0.3)
        self.assertEqual(list(drawn), ['proposals', 'stage 1', 'stage 2',
                                       'stage 3'])
        np.testing.assert_array_equal(drawn['stage 1'], [2, 3])
        np.testing.assert_array_equal(drawn['stage 2'], [0, 1, 4, 5])
        self.assertEqual(len(drawn['stage 3']), 0)
        np.testing.assert_array_equal(drawn['proposals'], np.arange(6))
        colors = proposal_colors(6)
        axes = fig.axes
        # what is on each panel: the drawn boxes, in the proposal's colour
        for ax, stage, key in zip(axes[1:], trace.stages,
                                  ['stage 1', 'stage 2', 'stage 3']):
            rects = _rects(ax)
            idx = drawn[key]
            self.assertEqual(len(rects), len(idx))
            for rect, i in zip(rects, idx):
                np.testing.assert_allclose(_xyxy(rect), stage.boxes[i])
                np.testing.assert_allclose(rect.get_edgecolor()[:3],
                                           colors[i])
            self.assertIn(f'{len(idx)} > 0.3', ax.get_title())
        # the proposal panel: every proposal, in white
        rects = _rects(axes[0])
        self.assertEqual(len(rects), 6)
        for rect, box in zip(rects, trace.proposals):
            np.testing.assert_allclose(_xyxy(rect), box)
            self.assertEqual(tuple(rect.get_edgecolor()[:3]), (1, 1, 1))
        np.testing.assert_array_equal(boxes_above(trace.stages[0], 0.3),
                                      [2, 3])

    def test_chosen_stages_and_picture_size(self):
        trace = _trace(h=60, w=90)
        fig, drawn = stage_figure(trace, stages=[3, 1], score_thr=0.3,
                                  panel_px=120)
        self.assertEqual(list(drawn), ['proposals', 'stage 3', 'stage 1'])
        with tempfile.TemporaryDirectory() as tmp:
            path = save_figure(fig, os.path.join(tmp, 'f.png'))
            self.assertEqual(os.listdir(tmp), ['f.png'])  # no temporary left
            mask = os.umask(0)
            os.umask(mask)
            self.assertEqual(os.stat(path).st_mode & 0o777, 0o666 & ~mask)
            with Image.open(path) as img:
                self.assertEqual(img.size, (3 * 120, 80 + TITLE_PX))
        with self.assertRaisesRegex(ValueError, r'--stages.*\[4\].*3 stages'):
            stage_figure(trace, stages=[1, 4])
        with self.assertRaisesRegex(ValueError, '--stages'):
            stage_figure(trace, stages=[])

    def test_proposal_figure_counts_every_box(self):
        # boxes partly outside the unit square are drawn and counted too
        cxcywh = np.array([[0.5, 0.5, 1.0, 1.0], [0.1, 0.9, 0.3, 0.5],
                           [-0.05, 1.1, 1.4, 0.2], [0.7, 0.2, 0.1, 0.1]])
        fig = proposal_figure(cxcywh)
        boxes_ax, centres, widths, heights = fig.axes[:4]
        # the unit square plus one rectangle per proposal
        self.assertEqual(len(_rects(boxes_ax)), 1 + 4)
        for ax in (widths, heights):
            self.assertEqual(sum(p.get_height() for p in ax.patches), 4)
        self.assertIn('median 0.65', widths.get_title())
        lo, hi = boxes_ax.get_xlim()
        self.assertLessEqual(lo, -0.75)  # -0.05 - 1.4 / 2
        self.assertGreaterEqual(hi, 1.0)

    def test_failed_save_keeps_the_previous_file(self):
        fig = proposal_figure(np.array([[0.5, 0.5, 1.0, 1.0]]))

        def fail(*args, **kwargs):
            raise RuntimeError('disk full')

        fig.savefig = fail
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, 'p.png')
            with open(path, 'wb') as f:
                f.write(b'old')
            with self.assertRaisesRegex(RuntimeError, 'disk full'):
                save_figure(fig, path)
            self.assertEqual(os.listdir(tmp), ['p.png'])
            with open(path, 'rb') as f:
                self.assertEqual(f.read(), b'old')
