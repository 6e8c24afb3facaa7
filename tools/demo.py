"""The main job: train Sparse R-CNN on the bundled shapes data on a CPU,
evaluate COCO bbox mAP, and write visualised predictions and curves.

    python tools/demo.py [--seed 0] [--work-dir work_dirs/demo]
"""
import argparse
import glob
import logging
import os.path as osp
import sys
import time
import warnings

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEFAULT_CONFIG = osp.join(REPO, 'configs',
                          'sparse_rcnn_r18_fpn_shapes_demo.py')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', default=DEFAULT_CONFIG)
    parser.add_argument('--work-dir', default=osp.join(REPO, 'work_dirs',
                                                       'demo'))
    parser.add_argument('--data-root', default=osp.join(REPO, 'data',
                                                        'shapes'))
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--epochs', type=int, default=None,
                        help='override the config\'s number of epochs')
    parser.add_argument('--num-vis', type=int, default=8,
                        help='val images to draw predictions on')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    # Quiet the third-party deprecation chatter; the run's log stays intact.
    warnings.filterwarnings('ignore', category=UserWarning)
    warnings.filterwarnings('ignore', category=DeprecationWarning)
    warnings.filterwarnings('ignore', category=FutureWarning)

    from mmengine.config import Config
    from mmengine.runner import Runner

    from mmdet.engine.hooks import DetVisualizationHook
    from mmdet_sparse.datasets import ensure_shapes_dataset
    from mmdet_sparse.utils.curves import plot_curves

    start = time.time()
    info = ensure_shapes_dataset(args.data_root)
    print(f'[demo] data: {args.data_root} ({info})', flush=True)

    cfg = Config.fromfile(args.config)
    data_root = args.data_root.rstrip('/') + '/'
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[split].dataset.data_root = data_root
    for split in ('val_evaluator', 'test_evaluator'):
        cfg[split].ann_file = data_root + 'annotations/instances_val.json'
    if args.epochs is not None:
        cfg.train_cfg.max_epochs = args.epochs
        cfg.train_cfg.val_interval = min(cfg.train_cfg.val_interval,
                                         args.epochs)
        cfg.param_scheduler[-1].end = args.epochs
        cfg.param_scheduler[-1].milestones = [
            m for m in cfg.param_scheduler[-1].milestones if m < args.epochs
        ]
    cfg.work_dir = args.work_dir
    cfg.randomness = dict(seed=args.seed, deterministic=False)

    runner = Runner.from_cfg(cfg)
    runner.logger.setLevel(logging.INFO)
    runner.train()

    # Evaluate the final weights once more while drawing predictions on
    # the first val images.
    vis_dir = 'predictions'
    num_val = len(runner.test_dataloader.dataset)
    for hook in runner.hooks:
        if isinstance(hook, DetVisualizationHook):
            hook.draw = True
            hook.test_out_dir = vis_dir
            hook.interval = max(1, num_val // max(1, args.num_vis))
    metrics = runner.test()

    run_dir = osp.join(args.work_dir, runner.timestamp)
    scalars = osp.join(run_dir, 'vis_data', 'scalars.json')
    curve = plot_curves(scalars, osp.join(args.work_dir, 'curves.png'))
    pictures = sorted(glob.glob(osp.join(run_dir, vis_dir, '*')))
    minutes = (time.time() - start) / 60
    print('\n[demo] ===== result =====')
    print(f"[demo] val COCO bbox mAP: {metrics['coco/bbox_mAP']:.3f} "
          f"(mAP@0.5 {metrics['coco/bbox_mAP_50']:.3f}), seed {args.seed}, "
          f'{minutes:.1f} min')
    print(f'[demo] predictions drawn: {len(pictures)} images in '
          f'{osp.join(run_dir, vis_dir)}')
    print(f'[demo] loss / mAP curves: {curve}')
    print(f'[demo] checkpoints and logs: {args.work_dir}')
    sys.stdout.flush()


if __name__ == '__main__':
    main()
