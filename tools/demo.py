"""The main job: train Sparse R-CNN on the bundled shapes data on a CPU,
evaluate COCO bbox mAP, and write visualised predictions, curves and the
paper's Figure 5 (learned proposals and every stage's boxes) for two val
images.

    python tools/demo.py [--seed 0] [--work-dir work_dirs/demo]
"""
import argparse
import glob
import json
import os.path as osp
import sys
import time
import warnings

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)
DEFAULT_CONFIG = osp.join(REPO, 'configs',
                          'sparse_rcnn_r18_fpn_kmeans_18e_shapes_demo.py')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', default=DEFAULT_CONFIG)
    parser.add_argument('--work-dir', default=osp.join(REPO, 'work_dirs',
                                                       'demo'))
    parser.add_argument('--data-root', default=osp.join(REPO, 'data',
                                                        'shapes'))
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--epochs', type=int, default=None,
                        help='override the config\'s number of epochs (lr '
                        'drops, if any, move in proportion)')
    return parser.parse_args()


def scale_epochs(cfg, epochs: int) -> None:
    """Train ``epochs`` epochs; epoch-based lr milestones keep their place
    relative to the end of training."""
    scale = epochs / cfg.train_cfg.max_epochs
    for scheduler in cfg.param_scheduler:
        if not scheduler.get('by_epoch', True):
            continue  # iteration-based (the warm-up)
        if scheduler.get('end') == cfg.train_cfg.max_epochs:
            scheduler.end = epochs
        if 'milestones' in scheduler:
            scheduler.milestones = sorted(
                {round(m * scale) for m in scheduler.milestones}
                - {0, epochs})
    cfg.train_cfg.max_epochs = epochs
    cfg.train_cfg.val_interval = min(cfg.train_cfg.val_interval, epochs)


def pick_val_images(data_root: str, num: int = 2) -> list:
    """The first ``num`` val images (by id) with at least two objects."""
    with open(osp.join(data_root, 'annotations', 'instances_val.json')) as f:
        coco = json.load(f)
    counts = {}
    for ann in coco['annotations']:
        counts[ann['image_id']] = counts.get(ann['image_id'], 0) + 1
    images = sorted(coco['images'], key=lambda img: img['id'])
    chosen = [img for img in images if counts.get(img['id'], 0) >= 2][:num]
    return [osp.join(data_root, 'val', img['file_name']) for img in chosen]


def main() -> None:
    args = parse_args()
    # Quiet the third-party deprecation chatter; the run's log stays intact.
    warnings.filterwarnings('ignore', category=UserWarning)
    warnings.filterwarnings('ignore', category=DeprecationWarning)
    warnings.filterwarnings('ignore', category=FutureWarning)

    from mmengine.config import Config

    from mmdet_sparse.apis import train_then_test, visualize_stages
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
        scale_epochs(cfg, args.epochs)
    args.work_dir = osp.abspath(args.work_dir)
    cfg.work_dir = args.work_dir
    cfg.randomness = dict(seed=args.seed, deterministic=False)

    # Evaluates the saved final weights (with EMA, the averaged ones) and
    # draws the predictions on the val images.
    vis_dir = 'predictions'
    metrics, runner, tester = train_then_test(cfg, vis_dir=vis_dir)

    scalars = osp.join(args.work_dir, runner.timestamp, 'vis_data',
                       'scalars.json')
    curve = plot_curves(scalars, osp.join(args.work_dir, 'curves.png'))
    vis_path = osp.join(args.work_dir, tester.timestamp, vis_dir)
    pictures = sorted(glob.glob(osp.join(vis_path, '*')))
    minutes = (time.time() - start) / 60
    print('\n[demo] ===== result =====')
    print(f"[demo] val COCO bbox mAP: {metrics['coco/bbox_mAP']:.3f} "
          f"(mAP@0.5 {metrics['coco/bbox_mAP_50']:.3f}), seed {args.seed}, "
          f'{minutes:.1f} min')
    if 'coco/segm_mAP' in metrics:  # a model with masks (QueryInst)
        print(f"[demo] val COCO segm mAP: {metrics['coco/segm_mAP']:.3f} "
              f"(mAP@0.5 {metrics['coco/segm_mAP_50']:.3f})")
    print(f'[demo] predictions drawn: {len(pictures)} images in '
          f'{vis_path}')
    print(f'[demo] loss / mAP curves: {curve}', flush=True)
    # The paper's Figure 5 for two val images, and the learned proposals.
    stage_pics = visualize_stages(args.config, tester.cfg.load_from,
                                  pick_val_images(args.data_root),
                                  osp.join(args.work_dir, 'stages'))
    print('[demo] proposals and stages (Figure 5): '
          + ', '.join(stage_pics['stage_pictures']))
    print(f"[demo] where the learned proposals lie: "
          f"{stage_pics['proposal_picture']}")
    print(f'[demo] checkpoints and logs: {args.work_dir}')
    print(f'[demo] total {(time.time() - start) / 60:.1f} min')
    sys.stdout.flush()


if __name__ == '__main__':
    main()
