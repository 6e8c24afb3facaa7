"""The benchmark's chart: latency against parameters and GFLOPs, and the
published COCO AP against latency with the Pareto front, every point
labelled without overlaps."""
from typing import Dict, List, Sequence, Tuple

from .report import pareto_front


def label_points(fig, ax, xs: Sequence[float], ys: Sequence[float],
                 labels: Sequence[str], fontsize: float = 7) -> list:
    """Annotate data points with labels that overlap neither each other
    nor the points (:func:`mmdet_sparse.visualization.place_labels` in
    display pixels; a thin leader line joins a label set further away).

    The axes limits are frozen first, since the placement is in pixels.
    Returns the annotation artists.
    """
    from mmdet_sparse.visualization import place_labels
    ax.set_xlim(ax.get_xlim())
    ax.set_ylim(ax.get_ylim())
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    sizes = []
    for label in labels:
        probe = ax.text(0, 0, label, fontsize=fontsize)
        extent = probe.get_window_extent(renderer)
        sizes.append((extent.width, extent.height))
        probe.remove()
    points = ax.transData.transform(list(zip(xs, ys))) if len(xs) else []
    frame = ax.get_window_extent(renderer)
    boxes = place_labels([tuple(p) for p in points], sizes,
                         bounds=(frame.x0, frame.y0, frame.x1, frame.y1),
                         marker_radius=9.0)
    artists = []
    for (px, py), box, label, x, y in zip(points, boxes, labels, xs, ys):
        near = (box[0] - 12 <= px <= box[2] + 12
                and box[1] - 12 <= py <= box[3] + 12)
        artists.append(ax.annotate(
            label, (x, y), xytext=(box[0] - px, box[1] - py),
            textcoords='offset pixels', ha='left', va='bottom',
            fontsize=fontsize, annotation_clip=False,
            arrowprops=None if near else dict(
                arrowstyle='-', color='0.6', linewidth=0.6,
                shrinkA=0, shrinkB=3)))
    return artists


def _short(config: str) -> str:
    return config.replace('sparse_rcnn_', '')


def plot(results: Sequence[dict], path: str,
         dpi: int = 120) -> Dict[str, List[Tuple[str, object]]]:
    """Latency vs parameters, vs GFLOPs, and published COCO AP vs latency
    (Pareto front marked), one labelled point per config.

    Returns:
        dict: Per panel title, ``(label, extent)`` of each label as drawn
        (extent: a display-space ``Bbox``), for checks.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    from mmdet_sparse.visualization import save_figure
    ok = [r for r in results if 'error' not in r]
    fig, axes = plt.subplots(1, 3, figsize=(18, 5.5), dpi=dpi)
    panels = [('params (M)', lambda r: r['params']['total'] / 1e6),
              ('GFLOPs', lambda r: r['flops']['total'] / 1e9
               if r.get('flops') else None)]
    placed = []
    for ax, (label, get) in zip(axes, panels):
        pts = [(get(r), r['latency']['total'] * 1e3, _short(r['config']))
               for r in ok if get(r) is not None]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=18)
        ax.set_xlabel(label)
        ax.set_ylabel('latency (ms)')
        ax.set_title(f'latency vs {label}')
        ax.grid(alpha=0.3)
        ax.margins(0.15)
        placed.append((ax, pts))

    ax = axes[2]
    with_ap = [r for r in ok if r.get('published_ap')]
    pts = [(r['latency']['total'] * 1e3, r['published_ap']['ap'],
            _short(r['config']) + ('' if r['published_ap'].get(
                'same_setting', True) else '*')) for r in with_ap]
    same = [r['published_ap'].get('same_setting', True) for r in with_ap]
    exact = [i for i, s in enumerate(same) if s]
    front = [exact[i] for i in pareto_front([pts[i][:2] for i in exact])]
    for filled in (True, False):
        idx = [i for i, s in enumerate(same) if s == filled]
        ax.scatter([pts[i][0] for i in idx], [pts[i][1] for i in idx], s=22,
                   facecolors='C0' if filled else 'none', edgecolors='C0',
                   label='AP published for this setting' if filled else
                   'AP published for another setting (*)')
    if front:
        ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front],
                color='C3', linewidth=1.2, marker='o', markersize=9,
                markerfacecolor='none', label='Pareto front', zorder=1)
    if not pts:
        ax.text(0.5, 0.5, 'no config with a published AP', ha='center',
                transform=ax.transAxes)
    ax.set_xlabel('latency (ms)')
    ax.set_ylabel('COCO val2017 box AP (published)')
    ax.set_title('accuracy vs latency')
    ax.grid(alpha=0.3)
    ax.margins(0.15)
    if pts:  # below the axes, clear of the points and their labels
        ax.legend(fontsize=7, loc='upper center', ncol=3, frameon=False,
                  bbox_to_anchor=(0.5, -0.12))
    placed.append((ax, pts))
    fig.tight_layout()
    artists = {}
    for ax, pts in placed:
        artists[ax.get_title()] = label_points(
            fig, ax, [p[0] for p in pts], [p[1] for p in pts],
            [p[2] for p in pts])
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    drawn = {title: [(t.get_text(), t.get_window_extent(renderer))
                     for t in texts] for title, texts in artists.items()}
    save_figure(fig, path, dpi=dpi)  # temp file + rename; closes the figure
    return drawn
