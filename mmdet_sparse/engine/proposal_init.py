"""Data-dependent initial proposal boxes: k-means of the training boxes.

:class:`DatasetProposalInitHook` sets the boxes of an
``EmbeddingRPNHead(init_boxes='dataset')`` once, before the first iteration
of a training from scratch, to the k-means centres of the training set's
normalised ``(cx, cy, w, h)`` boxes. They are ordinary learned weights
afterwards, so a checkpoint holds them.
"""
import time
from contextlib import contextmanager
from typing import Dict, Iterator, Optional, Tuple

import numpy as np
import torch
from mmengine.dist import broadcast
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmdet_sparse.registry import HOOKS


def _data_infos(dataset) -> Iterator[dict]:
    """Annotation dicts of a dataset, through mmengine's wrappers."""
    if hasattr(dataset, 'datasets'):  # ConcatDataset
        for part in dataset.datasets:
            yield from _data_infos(part)
        return
    if hasattr(dataset, 'dataset'):  # Repeat/ClassBalanced: each image once
        yield from _data_infos(dataset.dataset)
        return
    if hasattr(dataset, 'full_init'):
        dataset.full_init()
    for idx in range(len(dataset)):
        yield dataset.get_data_info(idx)


def dataset_boxes(dataset) -> Tuple[np.ndarray, Dict[str, int]]:
    """Normalised ``(cx, cy, w, h)`` of every ground-truth box.

    Boxes are clipped to their image and divided by its ``width`` and
    ``height``; ignored boxes (``ignore_flag``) are skipped, and boxes
    without area after clipping (or not finite) are dropped.

    Args:
        dataset: An mmengine dataset (or wrapper) whose ``get_data_info``
            gives ``width``, ``height`` and ``instances`` with ``bbox``
            (xyxy pixels).

    Returns:
        tuple: boxes ``(P, 4)`` float64, and counts ``images``,
        ``no_size`` (images without a width/height), ``boxes``,
        ``ignored``, ``clipped``, ``degenerate``.
    """
    stats = dict(images=0, no_size=0, boxes=0, ignored=0, clipped=0,
                 degenerate=0)
    chunks = []
    for info in _data_infos(dataset):
        stats['images'] += 1
        instances = info.get('instances') or []
        bboxes = [ins['bbox'] for ins in instances
                  if not ins.get('ignore_flag', 0)]
        stats['ignored'] += len(instances) - len(bboxes)
        if not bboxes:
            continue
        width, height = info.get('width'), info.get('height')
        if not width or not height:
            stats['no_size'] += 1
            stats['degenerate'] += len(bboxes)
            continue
        xyxy = np.asarray(bboxes, dtype=np.float64).reshape(-1, 4)
        size = np.array([width, height, width, height], dtype=np.float64)
        clipped = np.clip(xyxy, 0, size)
        finite = np.isfinite(xyxy).all(1)
        stats['clipped'] += int((finite & (clipped != xyxy).any(1)).sum())
        wh = clipped[:, 2:] - clipped[:, :2]
        keep = finite & (wh > 0).all(1)
        stats['degenerate'] += int((~keep).sum())
        norm = clipped[keep] / size
        chunks.append(np.concatenate(
            [(norm[:, :2] + norm[:, 2:]) / 2, norm[:, 2:] - norm[:, :2]], 1))
    boxes = np.concatenate(chunks) if chunks else np.zeros((0, 4))
    stats['boxes'] = len(boxes)
    return boxes, stats


def _sq_dists(points: torch.Tensor, centres: torch.Tensor,
              chunk: int = 4096) -> Tuple[torch.Tensor, torch.Tensor]:
    """Nearest centre ``(P,)`` and its squared distance ``(P,)``."""
    labels, dists = [], []
    c_sq = (centres**2).sum(1)
    minus_2c = -2 * centres.T
    for x in points.split(chunk):
        # |x - c|^2 = |c|^2 - 2 x.c + |x|^2; the last term is per row.
        near, lab = torch.addmm(c_sq, x, minus_2c).min(1)
        labels.append(lab)
        dists.append((near + (x**2).sum(1)).clamp_(min=0))
    return torch.cat(labels), torch.cat(dists)


@contextmanager
def _one_thread() -> Iterator[None]:
    """Single-threaded torch: the same result on every machine, and no
    slowdown from oversubscribed threads on a busy host."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def kmeans(points: np.ndarray, k: int, seed: int = 0, max_iters: int = 100,
           tol: float = 1e-4) -> Tuple[np.ndarray, Dict]:
    """Seeded k-means (k-means++ seeding, then Lloyd iterations).

    Single-threaded and float64, so that a seed gives the same centres on
    every process.

    With ``k`` or fewer distinct points there is nothing to cluster: the
    distinct points are repeated, in order, to fill ``k`` centres
    (``info['fallback'] = 'few_unique'``). A cluster that empties takes
    the point farthest from its centre.

    Args:
        points (np.ndarray): ``(P, D)``.
        k (int): Number of centres.
        seed (int): Seed of the k-means++ draws.
        max_iters (int): Most Lloyd iterations.
        tol (float): Stop when the squared moves of all centres sum to
            at most ``tol`` times the points' mean variance.

    Returns:
        tuple: centres ``(k, D)`` float64 and ``info`` with ``iters``,
        ``inertia`` (mean squared distance), ``unique``, ``fallback``.

    Raises:
        ValueError: no points, or ``k < 1``.
    """
    points = np.asarray(points, dtype=np.float64)
    if len(points) == 0:
        raise ValueError('k-means of an empty set of boxes')
    if k < 1:
        raise ValueError(f'k must be positive, got {k}')
    unique = np.unique(points, axis=0)
    info = dict(iters=0, inertia=0.0, unique=len(unique), fallback=None)
    if len(unique) <= k:
        info['fallback'] = 'few_unique' if len(unique) < k else None
        return np.resize(unique, (k, points.shape[1])), info
    rng = np.random.default_rng(seed)
    centres = np.empty((k, points.shape[1]))
    centres[0] = points[rng.integers(len(points))]
    closest = ((points - centres[0])**2).sum(1)
    for i in range(1, k):
        total = closest.sum()
        idx = (rng.choice(len(points), p=closest / total) if total > 0 else
               rng.integers(len(points)))
        centres[i] = points[idx]
        closest = np.minimum(closest, ((points - centres[i])**2).sum(1))
    with _one_thread():
        data, centres = torch.from_numpy(points), torch.from_numpy(centres)
        limit = tol * float(data.var(0).mean())
        for it in range(1, max_iters + 1):
            labels, dists = _sq_dists(data, centres)
            counts = torch.bincount(labels, minlength=k)
            new = torch.zeros_like(centres).index_add_(0, labels, data)
            new /= counts.clamp(min=1)[:, None]
            empty = (counts == 0).nonzero()[:, 0]
            if len(empty):
                far = dists.argsort(descending=True, stable=True)
                new[empty] = data[far[:len(empty)]]
            shift = float(((new - centres)**2).sum())
            centres = new
            info['iters'] = it
            if shift <= limit and not len(empty):
                break
        info['inertia'] = float(_sq_dists(data, centres)[1].mean())
    return centres.numpy(), info


@HOOKS.register_module()
class DatasetProposalInitHook(Hook):
    """Initialise ``EmbeddingRPNHead(init_boxes='dataset')`` boxes by
    k-means of the training set's boxes, before the first iteration.

    Runs only in a training from scratch: after ``load_from`` or a resume
    the checkpoint's boxes are kept. Every process computes the same
    seeded k-means and the result of process 0 is broadcast, so all
    processes train from identical boxes. The counts of dropped and
    clipped boxes, any fallback and the time taken are logged.

    Args:
        seed (int, optional): k-means seed; the run's seed when None (0
            without one).
        max_iters (int): Most Lloyd iterations. Defaults to 100.
        max_boxes (int, optional): Cluster a seeded random sample of this
            many boxes when the dataset has more (the time grows with
            boxes x proposals). Defaults to 200000; None for all.
    """

    priority = 'HIGH'

    def __init__(self, seed: Optional[int] = None, max_iters: int = 100,
                 max_boxes: Optional[int] = 200_000) -> None:
        self.seed = seed
        self.max_iters = max_iters
        self.max_boxes = max_boxes

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        head = getattr(model, 'rpn_head', None)
        if getattr(head, 'init_boxes', None) != 'dataset':
            raise ValueError(
                'DatasetProposalInitHook needs model.rpn_head to be an '
                "EmbeddingRPNHead with init_boxes='dataset', got "
                f"{type(head).__name__}(init_boxes="
                f"{getattr(head, 'init_boxes', None)!r})")
        if getattr(runner, '_has_loaded', False) or runner.iter > 0:
            head._boxes_from_data = True
            runner.logger.info('DatasetProposalInitHook: weights were '
                               'loaded; keeping their proposal boxes')
            return
        seed = self.seed
        if seed is None:
            seed = getattr(runner, 'seed', None) or 0
        start = time.perf_counter()
        boxes, stats = dataset_boxes(runner.train_dataloader.dataset)
        if len(boxes) == 0:
            raise ValueError(
                'DatasetProposalInitHook: the training set has no usable '
                f'box ({stats}); use another init_boxes')
        if self.max_boxes and len(boxes) > self.max_boxes:
            pick = np.random.default_rng(seed).choice(
                len(boxes), self.max_boxes, replace=False)
            boxes = boxes[np.sort(pick)]
        centres, info = kmeans(boxes, head.num_proposals, seed,
                               self.max_iters)
        seconds = time.perf_counter() - start
        result = torch.from_numpy(centres).float()
        broadcast(result, 0)
        head.set_proposal_boxes(result)
        runner.logger.info(
            f'DatasetProposalInitHook: {head.num_proposals} proposal boxes '
            f"= k-means of {len(boxes)} boxes ({info['unique']} distinct; "
            f"{stats['boxes']} in the data) from {stats['images']} images "
            f"in {seconds:.2f} s "
            f"(seed {seed}, {info['iters']} iterations, mean squared "
            f"distance {info['inertia']:.4g}); dropped "
            f"{stats['degenerate']} degenerate and {stats['ignored']} "
            f"ignored boxes, clipped {stats['clipped']} to their image")
        if info['fallback'] == 'few_unique':
            runner.logger.warning(
                f"DatasetProposalInitHook: only {info['unique']} distinct "
                f'boxes for {head.num_proposals} proposals; they are '
                'repeated to fill the proposals')
        self.last_stats = dict(stats, **info, seconds=seconds, seed=seed)
