"""Tests of ``tools/analysis_tools/vis_stages.py`` (and
``mmdet_sparse.apis.visualize_stages`` behind it) on a checkpoint trained
here: one iteration of the tiny demo config."""
import contextlib
import glob
import io
import os
import os.path as osp
import re
import tempfile
from unittest import TestCase

import numpy as np
from support.helpers import REPO, load_script
from mmengine.config import Config
from mmengine.runner import Runner
from PIL import Image
from support.tool_runs import write_config

from mmdet_sparse.apis import (InferenceInputError, build_inferencer,
                               predict, read_image, visualize_stages)
from mmdet_sparse.datasets import ensure_shapes_dataset
from mmdet_sparse.visualization import (TITLE_PX, learned_proposals,
                                        trace_stages)

TOOL = osp.join(REPO, 'tools', 'analysis_tools', 'vis_stages.py')


def _load_tool():
    return load_script('tools', 'analysis_tools', 'vis_stages.py',
                       name='vis_stages_tool')


def _png_size(path):
    with Image.open(path) as img:
        return img.format, img.size


class TestVisStages(TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        root = cls.tmp.name
        cls.data = osp.join(root, 'shapes')
        ensure_shapes_dataset(cls.data, num_train=4, num_val=2)
        cls.config = write_config(
            osp.join(root, 'tiny.py'), cls.data, epochs=1)
        cfg = Config.fromfile(cls.config)
        cfg.work_dir = osp.join(root, 'work')
        # A visualizer of its own: an instance named like the config's may
        # be left by another in-process run, logging to a removed folder.
        cfg.visualizer.name = f'test_vis_stages_{id(cls)}'
        Runner.from_cfg(cfg).train()  # one iteration of 4 images
        cls.ckpt = osp.join(cfg.work_dir, 'epoch_1.pth')
        cls.val = osp.join(cls.data, 'val')
        cls.images = sorted(glob.glob(osp.join(cls.val, '*')))
        cls.tool = _load_tool()

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_command_line_writes_the_pictures(self):
        out = osp.join(self.tmp.name, 'cli')
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            self.tool.main([self.config, self.ckpt, self.val, '--out-dir',
                            out, '--stages', '1', '3', '--panel-px', '128',
                            '--device', 'cpu'])
        names = sorted(os.listdir(out))
        stems = [osp.splitext(osp.basename(p))[0] for p in self.images]
        self.assertEqual(names, sorted(
            [f'{s}_stages.png' for s in stems] + ['epoch_1_proposals.png']))
        h, w = read_image(self.images[0]).shape[:2]
        for stem in stems:
            path = osp.join(out, f'{stem}_stages.png')
            self.assertIn(path, stdout.getvalue())
            self.assertGreater(osp.getsize(path), 1000)
            # proposals + stages 1 and 3, 128 px wide each
            self.assertEqual(_png_size(path),
                             ('PNG', (3 * 128, round(128 * h / w) + TITLE_PX)))
        self.assertEqual(_png_size(osp.join(out, 'epoch_1_proposals.png')),
                         ('PNG', (1300, 340)))

    def test_stage_panels_hold_the_boxes_above_the_threshold(self):
        inferencer = build_inferencer(self.config, self.ckpt)
        model = inferencer.model
        img = read_image(self.images[0])
        trace = trace_stages(model, inferencer.pipeline, img,
                             model.dataset_meta['classes'])
        self.assertEqual(len(trace.stages), 3)
        # a threshold inside the scores' range, so that some boxes are drawn
        # and some are not
        thr = float(np.median(trace.stages[0].scores))
        out = osp.join(self.tmp.name, 'thr')
        result = self.tool.main([self.config, self.ckpt, self.images[0],
                                 '--out-dir', out, '--score-thr',
                                 str(thr)])
        (path, ) = result['stage_pictures']
        drawn = result['drawn'][path]
        self.assertEqual(drawn['proposals'], 40)
        for i, stage in enumerate(trace.stages):
            self.assertEqual(drawn[f'stage {i + 1}'],
                             int((stage.scores > float(str(thr))).sum()))
        self.assertTrue(0 < drawn['stage 1'] < 40)

        # The last stage is what `predict` reports: its best detection is
        # the best-scoring proposal's box.
        pred = predict(inferencer, img).pred_instances
        last = trace.stages[-1]
        best = int(np.argmax(last.scores))
        self.assertAlmostEqual(float(pred.scores[0]), float(last.scores[best]),
                               places=5)
        np.testing.assert_allclose(pred.bboxes[0].numpy(), last.boxes[best],
                                   rtol=1e-5, atol=1e-3)
        self.assertEqual(int(pred.labels[0]), int(last.labels[best]))
        # The proposals are the learned boxes scaled to the image.
        cx, cy, bw, bh = learned_proposals(model).T
        h, w = img.shape[:2]
        expected = np.stack([(cx - bw / 2) * w, (cy - bh / 2) * h,
                             (cx + bw / 2) * w, (cy + bh / 2) * h], 1)
        np.testing.assert_allclose(trace.proposals, expected, atol=1e-3)

    def test_bad_inputs_name_the_path_and_write_nothing(self):
        out = osp.join(self.tmp.name, 'bad')
        missing = osp.join(self.tmp.name, 'missing.pth')
        with self.assertRaisesRegex(FileNotFoundError, re.escape(missing)):
            visualize_stages(self.config, missing, self.val, out)
        no_image = osp.join(self.tmp.name, 'nope.png')
        with self.assertRaisesRegex(FileNotFoundError, re.escape(no_image)):
            visualize_stages(self.config, self.ckpt, no_image, out)
        broken = osp.join(self.tmp.name, 'broken.png')
        with open(broken, 'wb') as f:
            f.write(b'not a png')
        with self.assertRaisesRegex(InferenceInputError, re.escape(broken)):
            visualize_stages(self.config, self.ckpt, [self.images[0], broken],
                             out)
        video = osp.join(self.tmp.name, 'clip.mp4')
        open(video, 'wb').close()
        with self.assertRaisesRegex(InferenceInputError, re.escape(video)):
            visualize_stages(self.config, self.ckpt, video, out)
        with self.assertRaisesRegex(ValueError, r'--stages.*\[7\].*3 stages'):
            visualize_stages(self.config, self.ckpt, self.images[0], out,
                             stages=[1, 7])
        self.assertFalse(osp.exists(out))
