"""Figure 5 of the Sparse R-CNN paper, and where the learned proposals lie.

* :func:`stage_figure`: one row of panels for an image: the learned
  proposal boxes in white, then each chosen stage's boxes that score above
  a threshold; the boxes of one proposal have one colour in every stage.
* :func:`proposal_figure`: all learned proposal boxes on the unit square,
  and histograms of their centres, widths and heights.

Drawing uses matplotlib (Agg); :func:`save_figure` writes a PNG atomically.
"""
import colorsys
import os
import os.path as osp
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .stage_trace import StageBoxes, StageTrace

TITLE_PX = 22  # height of the title strip above the panels, pixels
_GOLDEN = 0.618033988749895


def _pyplot():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def proposal_colors(num: int) -> np.ndarray:
    """``(num, 3)`` RGB colours in ``[0, 1]``, one per proposal; hues
    advance by the golden ratio, so neighbouring indices differ clearly."""
    return np.array([
        colorsys.hsv_to_rgb((i * _GOLDEN) % 1.0, 0.85, 1.0)
        for i in range(num)
    ]).reshape(num, 3)


def draw_boxes(ax, boxes: np.ndarray, colors: np.ndarray,
               linewidth: float = 1.2) -> None:
    """Add one unfilled rectangle per ``x1, y1, x2, y2`` row of ``boxes``."""
    from matplotlib.patches import Rectangle
    for (x1, y1, x2, y2), color in zip(boxes, colors):
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False,
                               edgecolor=color, linewidth=linewidth))


def _show_image(ax, image: np.ndarray, title: str, fontsize: float) -> None:
    h, w = image.shape[:2]
    ax.imshow(image, aspect='auto', extent=(0, w, h, 0),
              interpolation='nearest')
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_axis_off()
    ax.set_title(title, fontsize=fontsize, pad=3)


def draw_proposal_panel(ax, trace: StageTrace,
                        fontsize: float = 8.0) -> np.ndarray:
    """The image with every learned proposal box in white.

    Returns:
        np.ndarray: Indices of the drawn proposals (all of them).
    """
    _show_image(ax, trace.image, f'proposals ({len(trace.proposals)})',
                fontsize)
    white = np.ones((len(trace.proposals), 3))
    draw_boxes(ax, trace.proposals, white, linewidth=0.8)
    return np.arange(len(trace.proposals))


def boxes_above(stage: StageBoxes, score_thr: float) -> np.ndarray:
    """Indices of the proposals whose box scores strictly above
    ``score_thr`` at this stage, in proposal order."""
    return np.flatnonzero(stage.scores > score_thr)


def draw_stage_panel(ax, image: np.ndarray, stage: StageBoxes,
                     score_thr: float, colors: np.ndarray, title: str,
                     fontsize: float = 8.0) -> np.ndarray:
    """The image with the stage's boxes scoring above ``score_thr``, each
    in its proposal's colour.

    Returns:
        np.ndarray: Indices of the drawn proposals, in drawing order.
    """
    keep = boxes_above(stage, score_thr)
    _show_image(ax, image, f'{title}: {len(keep)} > {score_thr:g}', fontsize)
    draw_boxes(ax, stage.boxes[keep], colors[keep], linewidth=1.5)
    return keep


def stage_figure_size(image_shape: Tuple[int, int], num_panels: int,
                      panel_px: int = 256) -> Tuple[int, int]:
    """``(width, height)`` in pixels of :func:`stage_figure`'s picture."""
    h, w = image_shape[:2]
    return num_panels * panel_px, round(panel_px * h / w) + TITLE_PX


def stage_figure(trace: StageTrace,
                 stages: Optional[Sequence[int]] = None,
                 score_thr: float = 0.3,
                 panel_px: int = 256,
                 dpi: int = 100):
    """Figure 5: proposals, then the chosen stages, in one row.

    Args:
        trace (StageTrace): The image and every stage's boxes.
        stages (Sequence[int], optional): 1-based stage numbers to show;
            all stages when None.
        score_thr (float): A stage panel draws the boxes scoring above it.
        panel_px (int): Width of one panel in pixels; the height follows
            the image's aspect ratio.
        dpi (int): Figure resolution.

    Returns:
        tuple: The matplotlib figure and a dict of the drawn proposal
        indices per panel (``'proposals'``, ``'stage 1'``, ...).
    """
    stages = check_stages(stages, len(trace.stages))
    plt = _pyplot()
    width, height = stage_figure_size(trace.image.shape, len(stages) + 1,
                                      panel_px)
    fig = plt.figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    panel_h = (height - TITLE_PX) / height
    num_panels = len(stages) + 1
    gap = min(4, panel_px // 16) / width  # white space between panels
    axes = [fig.add_axes((i / num_panels, 0, 1 / num_panels - gap, panel_h))
            for i in range(num_panels)]
    fontsize = max(6.0, min(10.0, panel_px / 30))
    drawn: Dict[str, np.ndarray] = {
        'proposals': draw_proposal_panel(axes[0], trace, fontsize)}
    colors = proposal_colors(len(trace.proposals))
    for ax, number in zip(axes[1:], stages):
        name = f'stage {number}'
        drawn[name] = draw_stage_panel(ax, trace.image,
                                       trace.stages[number - 1], score_thr,
                                       colors, name, fontsize)
    return fig, drawn


def check_stages(stages: Optional[Sequence[int]],
                 num_stages: int) -> List[int]:
    """Validate 1-based stage numbers; all stages when ``stages`` is None.

    Raises:
        ValueError: a number outside ``1..num_stages``, or none given.
    """
    if stages is None:
        return list(range(1, num_stages + 1))
    stages = [int(s) for s in stages]
    if not stages:
        raise ValueError('--stages: give at least one stage number')
    bad = [s for s in stages if not 1 <= s <= num_stages]
    if bad:
        raise ValueError(
            f'--stages: stage(s) {bad} do not exist; the model has '
            f'{num_stages} stages, numbered 1 to {num_stages}')
    return stages


def proposal_figure(cxcywh: np.ndarray, title: str = 'learned proposals',
                    dpi: int = 100, bins: int = 20):
    """Where the learned proposals lie, independent of any image.

    Panels: every box on the unit square (``x`` right, ``y`` down, as in an
    image); histograms of the centres (``cx``, ``cy``); of the widths; of
    the heights (1 = the whole image side).

    Args:
        cxcywh (np.ndarray): ``(N, 4)`` normalised ``cx, cy, w, h``.
        title (str): Figure title.
        dpi (int): Figure resolution.
        bins (int): Histogram bins.

    Returns:
        matplotlib.figure.Figure
    """
    cxcywh = np.asarray(cxcywh, dtype=np.float64).reshape(-1, 4)
    plt = _pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.4), dpi=dpi)
    cx, cy, w, h = cxcywh.T
    xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
    ax = axes[0]
    ax.add_patch(_unit_square())
    draw_boxes(ax, xyxy, proposal_colors(len(xyxy)), linewidth=0.8)
    lo = min(0.0, float(xyxy.min(initial=0.0))) - 0.02
    hi = max(1.0, float(xyxy.max(initial=1.0))) + 0.02
    ax.set_xlim(lo, hi)
    ax.set_ylim(hi, lo)
    ax.set_aspect('equal')
    ax.set_title(f'{len(xyxy)} boxes on the unit image', fontsize=10)
    edges = np.linspace(min(0.0, float(cxcywh.min(initial=0.0))),
                        max(1.0, float(cxcywh.max(initial=1.0))), bins + 1)
    axes[1].hist([cx, cy], bins=edges, histtype='step', label=['cx', 'cy'])
    axes[1].legend(fontsize=8)
    axes[1].set_title('centres', fontsize=10)
    for ax, values, name in ((axes[2], w, 'widths'), (axes[3], h,
                                                      'heights')):
        ax.hist(values, bins=edges, color='0.4')
        ax.set_title(f'{name} (median {np.median(values):.2f})'
                     if len(values) else name, fontsize=10)
    for ax in axes[1:]:
        ax.set_xlabel('fraction of the image side', fontsize=8)
        ax.set_ylabel('proposals', fontsize=8)
        ax.tick_params(labelsize=8)
    axes[0].tick_params(labelsize=8)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def _unit_square():
    from matplotlib.patches import Rectangle
    return Rectangle((0, 0), 1, 1, fill=True, facecolor='0.92',
                     edgecolor='0.3', linewidth=1.0, linestyle='--')


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_figure(fig, path: str, dpi: Optional[int] = None) -> str:
    """Write ``fig`` as a PNG to ``path`` through a temporary file in the
    same folder (a file already at ``path`` is replaced only on success),
    then close the figure. Returns ``path``."""
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix='.png', dir=folder)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=dpi or fig.dpi, format='png')
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    finally:
        _pyplot().close(fig)
    return path
