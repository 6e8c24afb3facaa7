"""Test (and evaluate) a trained Sparse R-CNN checkpoint.

Examples::

    python tools/test.py configs/CONFIG.py CHECKPOINT.pth
    python tools/test.py configs/CONFIG.py CHECKPOINT.pth --out preds.pkl
    python tools/test.py configs/CONFIG.py CHECKPOINT.pth --show-dir vis
    python tools/test.py configs/CONFIG_tta.py CHECKPOINT.pth --tta
"""
import argparse
import copy
import os
import os.path as osp
import sys
import warnings
from typing import Optional

from mmengine.config import Config, ConfigDict, DictAction
from mmengine.runner import Runner

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

# Registers this package's and MMDetection's modules and lets Runner
# checkpoints load under weights_only (see mmdet_sparse/__init__.py).
import mmdet_sparse  # noqa: E402,F401
from mmdet_sparse.utils.checkpoint_url import resolve_checkpoint  # noqa: E402,E501
from mmdet_sparse.utils.tool_config import load_tool_config  # noqa: E402,E501
from mmdet.evaluation import DumpDetResults  # noqa: E402
from mmdet.utils import setup_cache_size_limit_of_dynamo  # noqa: E402
from mmdet_sparse.apis import setup_cpu_distributed  # noqa: E402
from mmdet_sparse.registry import RUNNERS  # noqa: E402


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    """Command-line arguments (MMDetection's test flags)."""
    parser = argparse.ArgumentParser(description='Test a detector')
    parser.add_argument('config', help='test config file')
    parser.add_argument('checkpoint', help='checkpoint file or http(s) URL')
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
        '--tta', action='store_true',
        help='test-time augmentation with the config\'s tta_model and '
        'tta_pipeline (without them: horizontal flip, soft-vote merge)')
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


def _innermost_dataset(dataset: ConfigDict) -> ConfigDict:
    """The dataset config inside dataset wrappers (``dataset.dataset...``)."""
    while 'dataset' in dataset:
        dataset = dataset['dataset']
    return dataset


def enable_tta(cfg: Config) -> None:
    """Wrap the model in ``cfg.tta_model`` and make the test dataset use
    ``cfg.tta_pipeline``, as MMDetection's ``tools/test.py --tta`` does.

    Without ``tta_model`` the views are merged by this package's soft vote
    (``SparseRCNNTTAModel``, no NMS); without ``tta_pipeline`` the views are
    the test pipeline's image, flipped and not.
    """
    dataset = _innermost_dataset(cfg.test_dataloader.dataset)
    if 'tta_model' not in cfg:
        max_per_img = cfg.model.get('test_cfg', {}).get('rcnn', {}).get(
            'max_per_img', 100)
        warnings.warn('the config has no tta_model: merging the views with '
                      f"SparseRCNNTTAModel(max_per_img={max_per_img})")
        cfg.tta_model = dict(type='SparseRCNNTTAModel',
                             max_per_img=max_per_img)
    if 'tta_pipeline' not in cfg:
        warnings.warn('the config has no tta_pipeline: the views are the '
                      'test pipeline\'s image and its horizontal flip')
        pipeline = copy.deepcopy(dataset.pipeline)
        pack = pipeline[-1]
        if pack.get('type') != 'PackDetInputs':
            raise ValueError(
                'tools/test.py --tta without tta_pipeline needs the test '
                f"pipeline to end with PackDetInputs, got {pack.get('type')}")
        meta_keys = tuple(pack.get('meta_keys', (
            'img_id', 'img_path', 'ori_shape', 'img_shape',
            'scale_factor')))
        pack['meta_keys'] = meta_keys + tuple(
            k for k in ('flip', 'flip_direction') if k not in meta_keys)
        pipeline[-1] = dict(
            type='TestTimeAug',
            transforms=[[dict(type='RandomFlip', prob=0.),
                         dict(type='RandomFlip', prob=1.)], [pack]])
        cfg.tta_pipeline = pipeline
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    dataset.pipeline = cfg.tta_pipeline


def setup_cfg(args: argparse.Namespace) -> Config:
    """Load the config and apply the command-line options to it."""
    cfg = load_tool_config(args.config, args.launcher, args.cfg_options,
                           args.work_dir)
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        enable_visualization(cfg, args)
    if args.tta:
        enable_tta(cfg)
    return cfg


def main(argv: Optional[list] = None) -> dict:
    """Entry point; returns the test metrics."""
    args = parse_args(argv)
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        raise ValueError(f'--out must be a .pkl/.pickle file, got {args.out}')
    args.checkpoint = resolve_checkpoint(args.checkpoint)
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
    return runner.test()


if __name__ == '__main__':
    main()
