"""Test (and evaluate) a trained Sparse R-CNN checkpoint.

Examples::

    python tools/test.py configs/CONFIG.py CHECKPOINT.pth
    python tools/test.py configs/CONFIG.py CHECKPOINT.pth --out preds.pkl
    python tools/test.py configs/CONFIG.py CHECKPOINT.pth --show-dir vis
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
from mmdet.evaluation import DumpDetResults  # noqa: E402
from mmdet.utils import setup_cache_size_limit_of_dynamo  # noqa: E402
from mmdet_sparse.apis import setup_cpu_distributed  # noqa: E402
from mmdet_sparse.registry import RUNNERS  # noqa: E402


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    """Command-line arguments (MMDetection's test flags)."""
    parser = argparse.ArgumentParser(description='Test a detector')
    parser.add_argument('config', help='test config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir', help='folder for the logs and evaluation metrics')
    parser.add_argument(
        '--out', help='also dump the predictions to this .pkl file')
    parser.add_argument(
        '--show', action='store_true', help='show the predictions in a window')
    parser.add_argument(
        '--show-dir', help='save the drawn predictions under '
        'WORK_DIR/TIMESTAMP/SHOW_DIR')
    parser.add_argument(
        '--wait-time', type=float, default=2,
        help='seconds each image is shown with --show')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config entries, e.g. test_dataloader.batch_size=2')
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def enable_visualization(cfg: Config, args: argparse.Namespace) -> None:
    """Turn on the ``visualization`` default hook for --show/--show-dir."""
    hook = cfg.get('default_hooks', {}).get('visualization')
    if hook is None:
        raise RuntimeError(
            f'--show/--show-dir need default_hooks.visualization = '
            f"dict(type='DetVisualizationHook') in the config {args.config}")
    hook['draw'] = True
    if args.show:
        hook['show'] = True
        hook['wait_time'] = args.wait_time
    if args.show_dir:
        hook['test_out_dir'] = args.show_dir


def setup_cfg(args: argparse.Namespace) -> Config:
    """Load the config and apply the command-line options to it."""
    cfg = load_tool_config(args.config, args.launcher, args.cfg_options,
                           args.work_dir)
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        enable_visualization(cfg, args)
    return cfg


def main(argv: Optional[list] = None) -> None:
    """Entry point."""
    args = parse_args(argv)
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        raise ValueError(f'--out must be a .pkl/.pickle file, got {args.out}')
    if '://' not in args.checkpoint and not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'Checkpoint not found: {args.checkpoint}')
    setup_cache_size_limit_of_dynamo()
    cfg = setup_cfg(args)
    if args.launcher == 'pytorch':
        setup_cpu_distributed(cfg)  # no-op with CUDA
    if 'runner_type' in cfg:
        runner = RUNNERS.build(cfg)
    else:
        runner = Runner.from_cfg(cfg)
    if args.out is not None:
        runner.test_evaluator.metrics.append(
            DumpDetResults(out_file_path=args.out))
    runner.test()


if __name__ == '__main__':
    main()
