"""Text labels next to scatter points, placed so that none overlap.

Positions are computed in display (pixel) coordinates: each label is a
rectangle of known size that must touch neither another label nor a point's
marker. Candidates lie on rings of growing distance around the point, in
eight directions; the first free candidate (inside ``bounds`` if possible)
wins. Points are served in the given order, so the result is deterministic.
"""
import math
from typing import List, Optional, Sequence, Tuple

Box = Tuple[float, float, float, float]  # x0, y0, x1, y1 (y up)

# Unit directions tried in turn on each ring: right, upper right, above,
# upper left, left, lower left, below, lower right.
_DIRECTIONS = ((1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1),
               (1, -1))


def boxes_overlap(a: Box, b: Box, pad: float = 0.0) -> bool:
    """Whether rectangles ``a`` and ``b`` (``x0, y0, x1, y1``) intersect
    once each is grown by ``pad`` on every side. Touching edges do not
    count when ``pad`` is 0."""
    return (a[0] - pad < b[2] + pad and b[0] - pad < a[2] + pad
            and a[1] - pad < b[3] + pad and b[1] - pad < a[3] + pad)


def _inside(box: Box, bounds: Optional[Box]) -> bool:
    return bounds is None or (box[0] >= bounds[0] and box[1] >= bounds[1]
                              and box[2] <= bounds[2]
                              and box[3] <= bounds[3])


def _candidate(point: Tuple[float, float], size: Tuple[float, float],
               direction: Tuple[int, int], dist: float) -> Box:
    """The label box at ``dist`` from ``point`` in ``direction``: its
    nearest edge (or corner) faces the point."""
    (px, py), (w, h), (dx, dy) = point, size, direction
    scale = dist / math.sqrt(2) if dx and dy else dist
    if dx > 0:
        x0 = px + scale
    elif dx < 0:
        x0 = px - scale - w
    else:
        x0 = px - w / 2
    if dy > 0:
        y0 = py + scale
    elif dy < 0:
        y0 = py - scale - h
    else:
        y0 = py - h / 2
    return (x0, y0, x0 + w, y0 + h)


def place_labels(points: Sequence[Tuple[float, float]],
                 sizes: Sequence[Tuple[float, float]],
                 bounds: Optional[Box] = None,
                 marker_radius: float = 4.0,
                 gap: float = 2.0,
                 step: float = 6.0,
                 max_rings: int = 40) -> List[Box]:
    """Non-overlapping label rectangles, one per point.

    Args:
        points (Sequence[tuple[float, float]]): Point positions ``(x, y)``
            in pixels.
        sizes (Sequence[tuple[float, float]]): Label sizes ``(w, h)`` in
            pixels, one per point.
        bounds (tuple, optional): ``(x0, y0, x1, y1)`` the labels should
            stay inside (e.g. the axes). When no candidate of a point fits
            inside, the first free one outside is used.
        marker_radius (float): Half the side of the square around each
            point that labels keep clear of.
        gap (float): Space kept between a label and everything else.
        step (float): Distance between successive rings of candidates.
        max_rings (int): Rings tried before giving up on ``bounds``.

    Returns:
        list[tuple]: ``(x0, y0, x1, y1)`` of each label, in point order.
        No two returned boxes overlap, and none covers a marker.
    """
    if len(points) != len(sizes):
        raise ValueError(f'{len(points)} points but {len(sizes)} label sizes')
    markers = [(x - marker_radius, y - marker_radius, x + marker_radius,
                y + marker_radius) for x, y in points]
    placed: List[Box] = []

    def free(box: Box) -> bool:
        return not any(boxes_overlap(box, other, gap / 2)
                       for other in placed + markers)

    for point, size in zip(points, sizes):
        chosen = None
        fallback = None
        ring = 0
        while chosen is None:
            dist = marker_radius + gap + ring * step
            for direction in _DIRECTIONS:
                box = _candidate(point, size, direction, dist)
                if not free(box):
                    continue
                if _inside(box, bounds):
                    chosen = box
                    break
                if fallback is None:
                    fallback = box
            ring += 1
            if chosen is None and fallback is not None \
                    and ring >= max_rings:
                chosen = fallback
        placed.append(chosen)
    return placed
