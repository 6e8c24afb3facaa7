"""Tiny training runs through the command-line tools (CPU): the config of
the shapes demo on 128 px images, a subprocess runner and the logged losses.
Shared by the end-to-end and checkpoint tests."""
import functools
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import tempfile
from typing import Dict, List, Optional, Tuple

from support.helpers import REPO

from mmdet_sparse.datasets import ensure_shapes_dataset

TESTS = osp.dirname(osp.dirname(osp.abspath(__file__)))
# Temporary folders that live as long as the test process.
_KEEP: list = []

DATA = """
data_root = '{data}/'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True{masks}),
    dict(type='Resize', scale=({size}, {size}), keep_ratio=True),{flip}
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=({size}, {size}), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True{masks}),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor'))
]
train_dataloader = dict(
    batch_size={batch}, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size={val_batch}, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
"""


def data_config(data: str, size: int = 128, batch: int = 4,
                val_batch: int = 2, flip: Optional[float] = None,
                masks: bool = False) -> str:
    """Config lines for the shapes data in ``data`` at ``size`` px, in the
    main process (no workers): pipelines (a ``RandomFlip`` with ``flip``
    where given, masks loaded with ``masks``), data loaders, evaluators."""
    flip_line = ('' if flip is None else
                 f"\n    dict(type='RandomFlip', prob={flip}),")
    return DATA.format(data=data, size=size, batch=batch,
                       val_batch=val_batch, flip=flip_line,
                       masks=', with_mask=True' if masks else '')


CONFIG = """
_base_ = '{repo}/configs/sparse_rcnn_r18_fpn_shapes_demo.py'
custom_imports = dict(imports=['mmdet_sparse', 'support.e2e_hooks'],
                      allow_failed_imports=False)
custom_hooks = [dict(type='RNGStateHook'), dict(type='FirstLossDumpHook')]
model = dict(backbone=dict(norm_eval=True))
{data_cfg}
train_cfg = dict(max_epochs={epochs}, val_interval=100)
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=1, save_best=None{checkpoint}))
log_processor = dict(window_size=1)
randomness = dict(seed=0)
"""


def write_config(path: str, data: str, flip: float = 0.5, batch: int = 4,
                 epochs: int = 4, checkpoint: str = '') -> str:
    """Write the tiny config to ``path`` for the shapes data in ``data``;
    ``checkpoint``: further arguments of the checkpoint hook (``', a=1'``).
    Return ``path``."""
    with open(path, 'w') as f:
        f.write(CONFIG.format(
            repo=REPO, epochs=epochs, checkpoint=checkpoint,
            data_cfg=data_config(data, batch=batch, flip=flip)))
    return path


def tool_env(env: Optional[dict] = None) -> dict:
    """The environment of a tool subprocess: this checkout and tests/ on
    ``PYTHONPATH`` (for the test hooks), plus ``env``."""
    env = dict(os.environ, **(env or {}))
    env['PYTHONPATH'] = os.pathsep.join(
        [REPO, TESTS, env.get('PYTHONPATH', '')])
    return env


def run_tool(args: List[str], env: Optional[dict] = None,
             timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a command from the repository root; fail with its output."""
    proc = subprocess.run(
        args, cwd=REPO, env=tool_env(env), capture_output=True, text=True,
        timeout=timeout)
    if proc.returncode:
        raise AssertionError(f'{" ".join(args)} failed:\n'
                             f'{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}')
    return proc


def train_command(config: str, work_dir: str, *extra: str) -> List[str]:
    """``tools/train.py`` on ``config`` into ``work_dir``."""
    return [sys.executable, 'tools/train.py', config, '--work-dir', work_dir,
            *extra]


def loss_records(work_dir: str) -> List[Tuple[int, float]]:
    """``(iteration, total loss)`` of every logged iteration of every run
    (timestamp folder) in ``work_dir``, runs in the order they started."""
    records = []
    for path in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                          'scalars.json'))):
        with open(path) as f:
            for line in f:
                record = json.loads(line)
                if 'loss' in record:
                    records.append((record['step'], record['loss']))
    return records


def losses(work_dir: str) -> Dict[int, float]:
    """Total loss per iteration from every run in ``work_dir`` (a later run
    overrides an earlier one)."""
    return dict(loss_records(work_dir))


@functools.lru_cache(maxsize=None)
def shapes_data() -> str:
    """A tiny copy of the shapes data (8 train, 4 val images), made once
    per test process and kept until it exits."""
    tmp = tempfile.TemporaryDirectory()
    _KEEP.append(tmp)
    ensure_shapes_dataset(osp.join(tmp.name, 'shapes'), num_train=8,
                          num_val=4)
    return osp.join(tmp.name, 'shapes')


# The shapes demo model 4x thinner (checkpoints of 10 MB instead of 116 MB),
# for tests that write a checkpoint after every iteration.
THIN_MODEL = """
model = dict(
    backbone=dict(base_channels=16),
    neck=dict(in_channels=[16, 32, 64, 128], out_channels=32),
    rpn_head=dict(proposal_feature_channel=32),
    roi_head=dict(
        proposal_feature_channel=32,
        bbox_roi_extractor=dict(out_channels=32),
        bbox_head=dict(
            in_channels=32,
            feedforward_channels=128,
            dynamic_conv_cfg=dict(
                in_channels=32, feat_channels=8, out_channels=32))))
"""


@functools.lru_cache(maxsize=None)
def iteration_run() -> Tuple[str, str]:
    """``(config, work_dir)`` of an uninterrupted tiny run of the thin model:
    2 epochs of 4 iterations (batches of 2, random flips), a checkpoint
    after every iteration, all kept, no validation. Trained once per test
    process: the reference of the kill and mid-epoch resume tests."""
    tmp = tempfile.TemporaryDirectory()
    _KEEP.append(tmp)
    tiny = write_config(osp.join(tmp.name, 'tiny.py'), shapes_data(),
                        batch=2, epochs=2,
                        checkpoint=', by_epoch=False, max_keep_ckpts=-1')
    config = osp.join(tmp.name, 'iteration.py')
    with open(config, 'w') as f:
        f.write(f"_base_ = '{tiny}'\n{THIN_MODEL}"
                'train_cfg = dict(val_begin=100)\n')
    work_dir = osp.join(tmp.name, 'reference')
    run_tool(train_command(config, work_dir))
    return config, work_dir


def run_two_ranks(script: str, args: List[str],
                  timeout: float = 240) -> List[str]:
    """Run ``script`` as ranks 0 and 1 of a 2-process gloo group on this
    machine (``MASTER_ADDR``/``MASTER_PORT``/``RANK``/``WORLD_SIZE`` set,
    one thread each); returns each rank's output. Both are killed after
    ``timeout`` seconds, so a hang ends the test instead of the suite."""
    import socket
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    procs = [
        subprocess.Popen(
            [sys.executable, script, *args],
            env=tool_env(dict(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port),
                              RANK=str(rank), WORLD_SIZE='2',
                              OMP_NUM_THREADS='1')),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for rank in (0, 1)
    ]
    try:
        return [p.communicate(timeout=timeout)[0].decode() for p in procs]
    except subprocess.TimeoutExpired:
        return ['(killed after the timeout: a hang)'] * 2
    finally:
        for p in procs:
            p.kill()
