"""Draw the paper's Figure 5 for a Sparse R-CNN checkpoint.

Example::

    python tools/analysis_tools/vis_stages.py CONFIG CHECKPOINT img.jpg \\
        --out-dir outputs/stages [--score-thr 0.3] [--stages 1 3 6]

For every image (an image file or the images of a folder) writes
``OUT_DIR/<image>_stages.png``: the learned proposal boxes in white, then
each stage's boxes scoring above ``--score-thr``, one colour per proposal
across the stages. Writes ``OUT_DIR/<checkpoint>_proposals.png`` too: all
learned proposal boxes on the unit square and histograms of their centres,
widths and heights.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))

from mmdet_sparse.apis import default_device, visualize_stages  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(
        description='Sparse R-CNN: learned proposals and the boxes of every '
        'stage (Figure 5 of the paper)')
    parser.add_argument('config', help='model config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('input', help='an image file or a folder of images')
    parser.add_argument('--out-dir', required=True,
                        help='folder for the pictures')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='stage panels draw the boxes scoring above it '
                        '(default: 0.3)')
    parser.add_argument('--stages', type=int, nargs='+', default=None,
                        help='stage numbers to draw, 1-based (default: all)')
    parser.add_argument('--panel-px', type=int, default=256,
                        help='width of one panel in pixels (default: 256)')
    parser.add_argument('--device', default=None,
                        help='cpu or cuda:N (default: cuda when available)')
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    """Entry point; returns what :func:`visualize_stages` returns."""
    args = parse_args(argv)
    out = visualize_stages(args.config, args.checkpoint, args.input,
                           args.out_dir, score_thr=args.score_thr,
                           stages=args.stages,
                           device=args.device or default_device(),
                           panel_px=args.panel_px)
    for path in out['stage_pictures']:
        counts = ', '.join(f'{k} {v}' for k, v in out['drawn'][path].items())
        print(f'{path} (boxes drawn: {counts})')
    print(f"{out['proposal_picture']} (learned proposals)")
    return out


if __name__ == '__main__':
    main()
