"""The shared base files of the QueryInst and CrowdHuman configs: each config
gets its mask head, pipelines, datasets and metric from them, and differs
from the Sparse R-CNN config it extends only where it says so. Loads the
configs only (Config.fromfile)."""
import copy
import glob
import os.path as osp
from unittest import TestCase

from mmengine.config import Config

CONFIG_DIR = osp.join(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs')
QUERYINST = sorted(glob.glob(osp.join(CONFIG_DIR, 'queryinst', '*.py')))
DEMO = 'queryinst/queryinst_r18_fpn_shapes_demo.py'
# Each QueryInst config and the Sparse R-CNN config whose data and
# schedule it takes, masks added.
COUNTERPARTS = {
    'queryinst/queryinst_r50_fpn_1x_coco.py': 'sparse_rcnn_r50_fpn_1x_coco.py',
    'queryinst/queryinst_r50_fpn_ms-480-800-3x_coco.py':
    'sparse_rcnn_r50_fpn_3x_coco.py',
    'queryinst/queryinst_r50_fpn_300-proposals_crop-ms-480-800-3x_coco.py':
    'sparse_rcnn_r50_fpn_300pro_crop_3x_coco.py',
    'queryinst/queryinst_r101_fpn_ms-480-800-3x_coco.py':
    'sparse_rcnn_r101_fpn_3x_coco.py',
    'queryinst/queryinst_r101_fpn_300-proposals_crop-ms-480-800-3x_coco.py':
    'sparse_rcnn_r101_fpn_300pro_crop_3x_coco.py',
    'queryinst/queryinst_swin_t_fpn_ms-480-800-3x_coco.py':
    'sparse_rcnn_swin_t_fpn_3x_coco.py',
    DEMO: 'sparse_rcnn_r18_fpn_shapes_demo.py',
}
CROWDHUMAN = 'sparse_rcnn_r50_fpn_500pro_50e_crowdhuman.py'
CROWD_DEMO = 'sparse_rcnn_r18_fpn_crowd_shapes_demo.py'

_cache = {}


def _load(name: str) -> dict:
    """The merged config as plain dicts and lists (loaded once)."""
    if name not in _cache:
        _cache[name] = Config.fromfile(osp.join(CONFIG_DIR, name)).to_dict()
    return copy.deepcopy(_cache[name])


def _with_mask(pipeline: list) -> list:
    return [dict(t, with_mask=True) if t['type'] == 'LoadAnnotations'
            else t for t in pipeline]


class TestConfigBases(TestCase):

    def test_every_queryinst_config_listed(self):
        names = {osp.relpath(p, CONFIG_DIR) for p in QUERYINST}
        self.assertEqual(names, set(COUNTERPARTS))

    def test_queryinst_model_is_counterpart_plus_base_mask_head(self):
        """The model is its Sparse R-CNN counterpart's with the base file's
        QueryInst additions merged in; only the demo narrows the mask head,
        to its box head's widths."""
        additions = _load('_base_/models/queryinst_mask_head.py')[
            'queryinst_model']
        for name, sparse_name in COUNTERPARTS.items():
            with self.subTest(config=name):
                model = _load(name)['model']
                sparse = _load(sparse_name)['model']
                roi = model['roi_head']
                extractor = roi.pop('mask_roi_extractor')
                head = roi.pop('mask_head')
                self.assertEqual(model.pop('type'), 'QueryInst')
                self.assertIs(
                    model['data_preprocessor'].pop('pad_mask'), True)
                self.assertEqual(
                    model['train_cfg']['rcnn'].pop('mask_size'), 28)
                self.assertEqual(
                    model['test_cfg']['rcnn'].pop('mask_thr_binary'), 0.5)
                sparse.pop('type')
                self.assertEqual(model, sparse)

                base_head = copy.deepcopy(additions['roi_head'])
                if name == DEMO:
                    bbox_head = roi['bbox_head']
                    width = bbox_head['in_channels']
                    conv = bbox_head['dynamic_conv_cfg']
                    base_head['mask_roi_extractor'].update(
                        out_channels=width,
                        featmap_strides=roi['bbox_roi_extractor'][
                            'featmap_strides'])
                    base_head['mask_head'].update(
                        num_classes=bbox_head['num_classes'],
                        in_channels=width,
                        conv_out_channels=width)
                    base_head['mask_head']['dynamic_conv_cfg'].update(
                        {k: conv[k] for k in ('in_channels', 'feat_channels',
                                              'out_channels')})
                self.assertEqual(extractor, base_head['mask_roi_extractor'])
                self.assertEqual(head, base_head['mask_head'])

    def test_queryinst_data_is_counterpart_with_masks(self):
        """Masks loaded in the training and test pipelines (the top-level
        ones and the loaders'), which are otherwise the Sparse R-CNN
        counterpart's; boxes and masks evaluated."""
        for name, sparse_name in COUNTERPARTS.items():
            with self.subTest(config=name):
                cfg, sparse = _load(name), _load(sparse_name)
                for key in ('train_pipeline', 'test_pipeline'):
                    loads = [t for t in cfg[key]
                             if t['type'] == 'LoadAnnotations']
                    self.assertEqual(len(loads), 1)
                    self.assertIs(loads[0].get('with_mask'), True)
                    self.assertEqual(cfg[key], _with_mask(sparse[key]))
                self.assertEqual(cfg['train_dataloader']['dataset'].pop(
                    'pipeline'), cfg['train_pipeline'])
                for loader in ('val_dataloader', 'test_dataloader'):
                    self.assertEqual(cfg[loader]['dataset'].pop('pipeline'),
                                     cfg['test_pipeline'])
                    sparse[loader]['dataset'].pop('pipeline')
                sparse['train_dataloader']['dataset'].pop('pipeline')
                for loader in ('train_dataloader', 'val_dataloader',
                               'test_dataloader'):
                    self.assertEqual(cfg[loader], sparse[loader])
                for evaluator in ('val_evaluator', 'test_evaluator'):
                    self.assertEqual(cfg[evaluator].pop('metric'),
                                     ['bbox', 'segm'])
                    sparse[evaluator].pop('metric')
                    self.assertEqual(cfg[evaluator], sparse[evaluator])
                self.assertEqual(cfg['train_cfg'], sparse['train_cfg'])

    def test_coco_instance_base(self):
        detection = _load('_base_/datasets/coco_detection.py')
        instance = _load('_base_/datasets/coco_instance.py')
        for key in ('train_pipeline', 'test_pipeline'):
            self.assertEqual(instance[key], _with_mask(detection[key]))
        self.assertEqual(instance['val_dataloader'],
                         instance['test_dataloader'])

    def test_crowdhuman_datasets_and_metric_from_base(self):
        """Both CrowdHuman configs replace their base's datasets and metric
        whole with the pieces of _base_/datasets/crowdhuman.py: no COCO or
        shapes setting (metainfo, min_size) is left in them."""
        pieces = _load('_base_/datasets/crowdhuman.py')
        for name, root, extra_train, extra_metric in (
                (CROWDHUMAN, 'data/CrowdHuman/',
                 dict(filter_cfg=dict(filter_empty_gt=False),
                      backend_args=None), {}),
                (CROWD_DEMO, 'data/crowd_shapes/', {},
                 dict(num_ji_process=2))):
            with self.subTest(config=name):
                cfg = _load(name)
                self.assertEqual(cfg['dataset_type'], 'CrowdHumanDataset')
                self.assertEqual(cfg['data_root'], root)
                common = dict(type='CrowdHumanDataset', data_root=root)
                self.assertEqual(
                    cfg['train_dataloader']['dataset'],
                    dict(pieces['crowdhuman_train'], **common,
                         **extra_train, pipeline=cfg['train_pipeline']))
                extra_val = {k: v for k, v in extra_train.items()
                             if k != 'filter_cfg'}
                for loader in ('val_dataloader', 'test_dataloader'):
                    self.assertEqual(
                        cfg[loader]['dataset'],
                        dict(pieces['crowdhuman_val'], **common, **extra_val,
                             pipeline=cfg['test_pipeline']))
                for evaluator in ('val_evaluator', 'test_evaluator'):
                    self.assertEqual(
                        cfg[evaluator],
                        dict(pieces['crowdhuman_metric'],
                             ann_file=root + 'annotation_val.odgt',
                             **extra_metric))

    def test_crowdhuman_pipelines(self):
        """The CPU demo keeps the shapes demo's pipelines; the CrowdHuman
        config has COCO's at CrowdHuman's sizes."""
        demo, shapes = _load(CROWD_DEMO), _load(
            'sparse_rcnn_r18_fpn_shapes_demo.py')
        for key in ('train_pipeline', 'test_pipeline'):
            self.assertEqual(demo[key], shapes[key])
        cfg, coco = _load(CROWDHUMAN), _load('sparse_rcnn_r50_fpn_1x_coco.py')
        train = coco['train_pipeline']
        train[2] = dict(type='RandomChoiceResize',
                        scales=[(1500, s) for s in range(480, 801, 32)],
                        keep_ratio=True)
        self.assertEqual(cfg['train_pipeline'], train)
        test = coco['test_pipeline']
        self.assertEqual(test[1]['type'], 'Resize')
        test[1]['scale'] = (1500, 800)
        self.assertEqual(cfg['test_pipeline'], test)

    def test_schedules_from_base(self):
        """Schedulers built from the base's: only the warm-up length, the
        end and the milestones change."""
        warmup = dict(type='LinearLR', start_factor=0.001, by_epoch=False,
                      begin=0)
        steps = dict(type='MultiStepLR', begin=0, by_epoch=True, gamma=0.1)
        for name, warmup_end, end, milestones in (
                ('queryinst/queryinst_r50_fpn_1x_coco.py', 1000, 12, [8, 11]),
                ('queryinst/queryinst_r50_fpn_ms-480-800-3x_coco.py', 500, 36,
                 [27, 33]),
                (CROWDHUMAN, 500, 50, [40])):
            with self.subTest(config=name):
                cfg = _load(name)
                self.assertEqual(cfg['param_scheduler'], [
                    dict(warmup, end=warmup_end),
                    dict(steps, end=end, milestones=milestones)
                ])
                self.assertEqual(cfg['train_cfg']['max_epochs'], end)
