"""``tools/test.py --tta`` on a checkpoint trained for one iteration: the
demo TTA config's views (6 scales x 2 flips) reach the soft-vote merge and
COCO evaluation; without ``tta_model``/``tta_pipeline`` the tool falls back
to flip views."""
import os.path as osp
import tempfile
import uuid
import warnings
from unittest import TestCase, mock

from support.helpers import REPO, load_script
from mmengine.config import Config
from mmengine.runner import Runner

from mmdet_sparse.datasets import ensure_shapes_dataset
from mmdet_sparse.models.test_time_augs import SparseRCNNTTAModel

TINY = """
_base_ = '{base}'
data_root = '{data}/'
custom_hooks = []
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='PackDetInputs')
]
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
train_cfg = dict(max_epochs=1, val_interval=100)
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=1, save_best=None))
randomness = dict(seed=0)
"""


def _unique(name: str) -> str:
    """A visualizer name of its own: mmengine keeps one visualizer per name
    for the whole process, and a later Runner would otherwise write into
    this test's (by then deleted) folder."""
    return f'{__name__}-{name}-{uuid.uuid4().hex}'


def _load_test_tool():
    return load_script('tools', 'test.py', name='test_tool')


class TestTestTTA(TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.data = osp.join(cls.tmp.name, 'shapes')
        ensure_shapes_dataset(cls.data, num_train=4, num_val=2)
        cls.plain = cls._config('plain', 'sparse_rcnn_r18_fpn_shapes_demo.py')
        cls.tta = cls._config('tta', 'sparse_rcnn_r18_fpn_shapes_demo_tta.py')
        cfg = Config.fromfile(cls.plain)
        cfg.work_dir = osp.join(cls.tmp.name, 'train')
        cfg.visualizer.name = _unique('train')
        Runner.from_cfg(cfg).train()
        cls.ckpt = osp.join(cfg.work_dir, 'epoch_1.pth')
        cls.tool = _load_test_tool()

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    @classmethod
    def _config(cls, name, base):
        path = osp.join(cls.tmp.name, f'{name}.py')
        with open(path, 'w') as f:
            f.write(TINY.format(base=osp.join(REPO, 'configs', base),
                                data=cls.data))
        return path

    def _test(self, config, name):
        """Run the tool with --tta; return its metrics and, per image, the
        number of views merged and the merged sample."""
        merges = []
        merge = SparseRCNNTTAModel.merge_preds

        def spy(model, data_samples_list):
            out = merge(model, data_samples_list)
            merges.extend(zip([len(v) for v in data_samples_list], out))
            return out

        with mock.patch.object(SparseRCNNTTAModel, 'merge_preds', spy):
            metrics = self.tool.main([
                config, self.ckpt, '--tta', '--work-dir',
                osp.join(self.tmp.name, name), '--cfg-options',
                f'visualizer.name={_unique(name)}'
            ])
        return metrics, merges

    def test_demo_tta_config(self):
        metrics, merges = self._test(self.tta, 'test_tta')
        self.assertIn('coco/bbox_mAP', metrics)
        self.assertEqual([n for n, _ in merges], [12] * 2)
        for _, sample in merges:
            pred = sample.pred_instances
            self.assertLessEqual(len(pred.scores), 40)
            self.assertGreater(len(pred.scores), 0)
            self.assertTrue((pred.scores[:-1] >= pred.scores[1:]).all())
            self.assertTrue((pred.bboxes >= 0).all())
            self.assertTrue((pred.bboxes <= 256).all())
            # The first view: the TTA pipeline's 192 px, unflipped.
            self.assertEqual(tuple(sample.metainfo['scale']), (192, 192))
            self.assertEqual(sample.metainfo['img_shape'], (192, 192))
            self.assertFalse(sample.metainfo['flip'])

    def test_without_tta_settings_flips(self):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            metrics, merges = self._test(self.plain, 'test_flip')
        text = ' '.join(str(w.message) for w in caught)
        self.assertIn('no tta_model', text)
        self.assertIn('no tta_pipeline', text)
        self.assertIn('coco/bbox_mAP', metrics)
        self.assertEqual([n for n, _ in merges], [2] * 2)
        self.assertEqual(merges[0][1].metainfo['img_shape'], (256, 256))
