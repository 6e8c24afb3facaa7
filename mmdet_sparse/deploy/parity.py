"""Compare two top-k detection lists of one image (parity checks)."""
from typing import Dict

import numpy as np


def compare_detections(boxes: np.ndarray, scores: np.ndarray,
                       labels: np.ndarray, ref_boxes: np.ndarray,
                       ref_scores: np.ndarray, ref_labels: np.ndarray,
                       tie_tol: float = 1e-5) -> Dict:
    """Match detections to reference ones: same label, nearest box.

    A (proposal, label) pair is identified by its label and its box (the
    boxes of different proposals are far apart compared with the rounding
    differences of two implementations). A detection without a partner
    counts as missing unless its score ties the k-th score of either list
    (``tie_tol``), where either implementation may pick either pair.

    Args:
        boxes, scores, labels: ``(k, 4)``, ``(k,)``, ``(k,)`` detections.
        ref_boxes, ref_scores, ref_labels: The reference ones.
        tie_tol (float): Scores this close to the k-th score are ties.

    Returns:
        dict: ``k``, ``matched``, ``missing`` (pairs of one list absent in
        the other, ties aside), ``max_score_diff``, ``max_box_diff``.
    """
    boxes, ref_boxes = np.asarray(boxes, np.float64), np.asarray(
        ref_boxes, np.float64)
    scores, ref_scores = np.asarray(scores, np.float64), np.asarray(
        ref_scores, np.float64)
    kth = min(scores.min(initial=np.inf), ref_scores.min(initial=np.inf))
    free = set(range(len(ref_scores)))
    matched, missing, score_diff, box_diff = 0, 0, 0.0, 0.0
    for box, score, label in zip(boxes, scores, labels):
        cand = [i for i in free if ref_labels[i] == label]
        dist = [float(np.abs(ref_boxes[i] - box).max()) for i in cand]
        if not cand or min(dist) > 1.0:
            missing += int(score > kth + tie_tol)
            continue
        i = cand[int(np.argmin(dist))]
        free.discard(i)
        matched += 1
        score_diff = max(score_diff, abs(float(ref_scores[i] - score)))
        box_diff = max(box_diff, min(dist))
    missing += sum(int(ref_scores[i] > kth + tie_tol) for i in free)
    return dict(k=len(ref_scores), matched=matched, missing=missing,
                max_score_diff=score_diff, max_box_diff=box_diff)
