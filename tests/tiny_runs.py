"""Tiny training runs for the tests: a config of the demo model on a few
128 px images, and a way to run the command-line tools."""
import os
import os.path as osp
import subprocess

from helpers import REPO

TESTS = osp.dirname(osp.abspath(__file__))

TINY_CONFIG = """
_base_ = '{repo}/configs/sparse_rcnn_r18_fpn_shapes_demo.py'
custom_imports = dict(imports=['mmdet_sparse', 'e2e_hooks'],
                      allow_failed_imports=False)
custom_hooks = [dict(type='RNGStateHook'), dict(type='FirstLossDumpHook')]
data_root = '{data}/'
model = dict(backbone=dict(norm_eval=True))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='RandomFlip', prob={flip}),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor'))
]
train_dataloader = dict(
    batch_size={batch}, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
train_cfg = dict(max_epochs={epochs}, val_interval=100)
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=1, save_best=None))
log_processor = dict(window_size=1)
randomness = dict(seed=0)
"""



def write_tiny_config(folder: str, data_root: str, name: str,
                      flip: float = 0.5, batch: int = 4,
                      epochs: int = 4) -> str:
    """Write the tiny config ``folder/name.py`` for the shapes data at
    ``data_root``; returns its path."""
    path = osp.join(folder, f'{name}.py')
    with open(path, 'w') as f:
        f.write(TINY_CONFIG.format(repo=REPO, data=data_root, flip=flip,
                                   batch=batch, epochs=epochs))
    return path


def run_tool(args, env=None, timeout=600) -> subprocess.CompletedProcess:
    """Run ``args`` in the repository root with the repository and the
    tests folder importable; raise with the output tail if it fails."""
    env = dict(os.environ, **(env or {}))
    env['PYTHONPATH'] = os.pathsep.join(
        [REPO, TESTS, env.get('PYTHONPATH', '')])
    proc = subprocess.run(
        args, cwd=REPO, env=env, capture_output=True, text=True,
        timeout=timeout)
    if proc.returncode:
        raise AssertionError(f'{" ".join(args)} failed:\n'
                             f'{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}')
    return proc
