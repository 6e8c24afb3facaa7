"""Shared, expensive fixtures of the deployment tests: one tiny image set,
the demo model with initialised random weights and its ``--dynamic``
export (made once per session)."""
import os.path as osp

import pytest
import torch
from helpers import REPO
from mmengine.config import Config

DEMO_CONFIG = osp.join(REPO, 'configs', 'sparse_rcnn_r18_fpn_shapes_demo.py')


def demo_config(data_root: str) -> Config:
    """The demo config on a tiny shapes set under ``data_root``."""
    cfg = Config.fromfile(DEMO_CONFIG)
    root = data_root.rstrip('/') + '/'
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[split].dataset.data_root = root
    for split in ('val_evaluator', 'test_evaluator'):
        cfg[split].ann_file = root + 'annotations/instances_val.json'
    return cfg


@pytest.fixture(scope='session')
def shapes(tmp_path_factory):
    """4 train and 3 val images, 96x128 (resized to 192x256 by the demo's
    test pipeline)."""
    from mmdet_sparse.datasets.synthetic_shapes import \
        generate_shapes_dataset
    root = tmp_path_factory.mktemp('shapes')
    info = generate_shapes_dataset(root, num_train=4, num_val=3,
                                   img_size=(96, 128), seed=3)
    return dict(root=str(root), info=info, cfg=demo_config(str(root)))


@pytest.fixture(scope='session')
def demo_model(shapes):
    """Eval-mode demo detector with initialised random weights."""
    from mmdet_sparse.deploy import build_detector
    torch.manual_seed(0)
    model, _ = build_detector(shapes['cfg'])
    model.init_weights()
    return model.eval()


@pytest.fixture(scope='session')
def dynamic_onnx(shapes, demo_model, tmp_path_factory):
    """``--dynamic`` export of ``demo_model`` (example input 128x160)."""
    from mmdet_sparse.deploy import export_onnx
    path = str(tmp_path_factory.mktemp('onnx') / 'demo_dynamic.onnx')
    meta = export_onnx(shapes['cfg'], None, path, img_size=(128, 160),
                       dynamic=True, model=demo_model)
    return dict(path=path, meta=meta)
