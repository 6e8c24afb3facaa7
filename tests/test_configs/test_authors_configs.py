"""configs/authors/: the zoo configs plus the authors' test-time arithmetic
and input convention, nothing else."""
import copy
import os
import tempfile
from unittest import TestCase

import numpy as np
from mmengine.config import Config
from PIL import Image

from support.helpers import CONFIG_DIR
from mmdet_sparse.registry import TRANSFORMS

ZOO = {
    'sparse_rcnn_r50_fpn_100pro_3x_d2.py': 'sparse_rcnn_r50_fpn_3x_coco.py',
    'sparse_rcnn_r50_fpn_300pro_3x_d2.py':
    'sparse_rcnn_r50_fpn_300pro_crop_3x_coco.py',
    'sparse_rcnn_r101_fpn_100pro_3x_d2.py': 'sparse_rcnn_r101_fpn_3x_coco.py',
    'sparse_rcnn_r101_fpn_300pro_3x_d2.py':
    'sparse_rcnn_r101_fpn_300pro_crop_3x_coco.py',
}


class TestAuthorsConfigs(TestCase):

    def test_zoo_config_plus_options(self):
        for name, zoo_name in ZOO.items():
            with self.subTest(config=name):
                cfg = Config.fromfile(
                    os.path.join(CONFIG_DIR, 'authors', name)).to_dict()
                zoo = Config.fromfile(os.path.join(CONFIG_DIR,
                                                   zoo_name)).to_dict()
                model = copy.deepcopy(cfg['model'])
                roi = model['roi_head']
                self.assertEqual(
                    roi['bbox_roi_extractor'].pop('level_rule'), 'detectron2')
                self.assertEqual(roi['bbox_head'].pop('decode_style'),
                                 'detectron2')
                self.assertIs(
                    model['test_cfg']['rcnn'].pop('clip_to_image'), True)
                pre = model['data_preprocessor']
                self.assertEqual(pre['mean'], [123.675, 116.28, 103.53])
                self.assertEqual(pre['std'], [58.395, 57.12, 57.375])
                self.assertIs(pre['bgr_to_rgb'], True)
                self.assertEqual(model, zoo['model'])
                self.assertEqual(cfg['train_dataloader'],
                                 zoo['train_dataloader'])
                for loader in ('val_dataloader', 'test_dataloader'):
                    pipeline = cfg[loader]['dataset']['pipeline']
                    self.assertEqual(pipeline[0]['imdecode_backend'],
                                     'pillow')
                    self.assertEqual(pipeline[1]['backend'], 'pillow')
                    self.assertEqual(pipeline[1]['scale'], (1333, 800))

    def test_test_images_read_and_resized_as_detectron2(self):
        # detectron2: PIL decode to RGB, shorter side to 800 with PIL
        # bilinear (longer side <= 1333, sizes rounded half up).
        cfg = Config.fromfile(
            os.path.join(CONFIG_DIR, 'authors', 'sparse_rcnn_r50_fpn_100pro_'
                         '3x_d2.py'))
        load, resize = (TRANSFORMS.build(dict(t, _scope_='mmdet_sparse'))
                        for t in cfg.test_pipeline[:2])
        gen = np.random.default_rng(0)
        with tempfile.TemporaryDirectory() as tmp:
            for w, h in ((64, 48), (150, 50)):
                path = os.path.join(tmp, f'{w}x{h}.jpg')
                Image.fromarray(gen.integers(0, 256, (h, w, 3),
                                             dtype=np.uint8)).save(path)
                results = resize(load(dict(img_path=path)))
                scale = 800 / min(h, w)
                new_h, new_w = (800, scale * w) if h < w else (scale * h, 800)
                if max(new_h, new_w) > 1333:
                    shrink = 1333 / max(new_h, new_w)
                    new_h, new_w = new_h * shrink, new_w * shrink
                size = (int(new_w + 0.5), int(new_h + 0.5))
                expected = np.asarray(
                    Image.open(path).convert('RGB').resize(
                        size, Image.BILINEAR))[..., ::-1]  # BGR, as loaded
                self.assertEqual(results['img'].shape[:2], size[::-1])
                np.testing.assert_array_equal(results['img'], expected)
