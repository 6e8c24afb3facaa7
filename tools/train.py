"""Train a Sparse R-CNN model from a config.

Examples::

    python tools/train.py configs/CONFIG.py
    python tools/train.py configs/CONFIG.py --amp --work-dir work_dirs/run1
    python tools/train.py configs/CONFIG.py --resume            # latest ckpt
    python tools/train.py configs/CONFIG.py --resume PATH.pth   # that ckpt

``--amp`` trains in float16 with dynamic loss scaling on CUDA; without CUDA
it autocasts to bfloat16 on the CPU, with no loss scaler. Several processes:
``tools/dist_train.sh`` (on CPU add
``--cfg-options env_cfg.dist_cfg.backend=gloo``).
"""
import argparse
import os
import os.path as osp
import sys
from typing import Optional

from mmengine.config import Config, DictAction
from mmengine.runner import Runner

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

# Registers this package's and MMDetection's modules and lets Runner
# checkpoints load under weights_only (see mmdet_sparse/__init__.py).
import mmdet_sparse  # noqa: E402,F401
from mmdet_sparse.utils.tool_config import load_tool_config  # noqa: E402,E501
from mmdet.utils import setup_cache_size_limit_of_dynamo  # noqa: E402
from mmdet_sparse.apis import (amp_for_device, enable_amp,  # noqa: E402
                               setup_cpu_distributed)
from mmdet_sparse.registry import RUNNERS  # noqa: E402


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    """Command-line arguments (MMDetection's train flags)."""
    parser = argparse.ArgumentParser(description='Train a detector')
    parser.add_argument('config', help='train config file')
    parser.add_argument('--work-dir', help='folder for logs and checkpoints')
    parser.add_argument(
        '--amp', action='store_true',
        help='mixed precision: float16 on CUDA, bfloat16 on CPU')
    parser.add_argument(
        '--auto-scale-lr', action='store_true',
        help='scale the LR by (total batch size / '
        'auto_scale_lr.base_batch_size)')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from this checkpoint, or with no value from the latest '
        'checkpoint in the work dir')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config entries, e.g. train_cfg.max_epochs=12 '
        'key="[a,b]"')
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def setup_cfg(args: argparse.Namespace) -> Config:
    """Load the config and apply the command-line options to it."""
    cfg = load_tool_config(args.config, args.launcher, args.cfg_options,
                           args.work_dir)

    amp = enable_amp(cfg) if args.amp else amp_for_device(cfg)
    if amp:
        print(amp, flush=True)

    if args.auto_scale_lr:
        scale_cfg = cfg.get('auto_scale_lr')
        if not scale_cfg or 'base_batch_size' not in scale_cfg:
            raise RuntimeError(
                f'--auto-scale-lr needs auto_scale_lr = dict(enable=False, '
                f'base_batch_size=...) in the config {args.config}')
        cfg.auto_scale_lr.enable = True

    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


def main(argv: Optional[list] = None) -> None:
    """Entry point."""
    args = parse_args(argv)
    setup_cache_size_limit_of_dynamo()
    cfg = setup_cfg(args)
    if args.launcher == 'pytorch':
        setup_cpu_distributed(cfg)  # no-op with CUDA
    if 'runner_type' in cfg:
        runner = RUNNERS.build(cfg)
    else:
        runner = Runner.from_cfg(cfg)
    runner.train()


if __name__ == '__main__':
    main()
