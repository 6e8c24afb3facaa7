"""Helpers of the deployment tests (a module of their own, so that the
test files and ``conftest.py`` share them by import)."""
import os.path as osp

import torch
from support.helpers import REPO, load_script
from mmengine.config import Config
from mmengine.registry import DefaultScope

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


def load_tool(*parts):
    """A script under ``tools/`` as a module."""
    return load_script('tools', *parts, name='tool_' + parts[-1][:-3])


def train_briefly(cfg: Config, steps: int = 3):
    """The demo model after ``steps`` AdamW steps (batch 2) on the train
    set of ``cfg``, in eval mode."""
    from mmengine.dataset import pseudo_collate
    from mmengine.optim import OptimWrapper

    from mmdet_sparse.deploy import build_detector
    from mmdet_sparse.registry import DATASETS
    torch.manual_seed(1)
    model, _ = build_detector(cfg)
    model.init_weights()
    model.train().requires_grad_(True)
    with DefaultScope.overwrite_default_scope('mmdet_sparse'):
        dataset = DATASETS.build(cfg.train_dataloader.dataset)
    wrapper = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-3))
    for step in range(steps):
        batch = pseudo_collate([dataset[(2 * step + i) % len(dataset)]
                                for i in range(2)])
        model.train_step(batch, wrapper)
    return model.eval().requires_grad_(False)
