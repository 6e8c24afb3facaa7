"""What each stage of a Sparse R-CNN predicts for one image.

:func:`trace_stages` runs the model's own modules on one image, the way
``predict`` does (test pipeline, data preprocessor, ``extract_feat``, the
learned proposals of ``rpn_head``), but keeps the output of every stage
(``SparseRoIHead.forward``) instead of only the last one's top-k.
"""
from dataclasses import dataclass
from typing import Any, List, Sequence

import numpy as np
import torch


@dataclass
class StageBoxes:
    """The ``N`` boxes of one stage, one per proposal, in proposal order.

    Attributes:
        boxes (np.ndarray): ``(N, 4)`` ``x1, y1, x2, y2`` in pixels of the
            original image.
        scores (np.ndarray): ``(N,)`` best class probability of each box.
        labels (np.ndarray): ``(N,)`` the class of that probability.
    """
    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray


@dataclass
class StageTrace:
    """One image, the learned proposals and every stage's boxes.

    Attributes:
        image (np.ndarray): ``(H, W, 3)`` RGB ``uint8`` original image.
        proposals (np.ndarray): ``(N, 4)`` learned proposal boxes scaled to
            the image, ``x1, y1, x2, y2`` pixels.
        stages (list[StageBoxes]): One entry per stage, first to last.
        classes (Sequence[str]): Class names, indexed by ``labels``.
    """
    image: np.ndarray
    proposals: np.ndarray
    stages: List[StageBoxes]
    classes: Sequence[str]


def check_sparse_rcnn(model: Any, source: str = 'the model') -> None:
    """Raise ``TypeError`` unless ``model`` has Sparse R-CNN's learned
    proposals (``rpn_head.init_proposal_bboxes``) and a stage-wise RoI head
    (``roi_head.bbox_head`` list and ``roi_head.forward``)."""
    rpn = getattr(model, 'rpn_head', None)
    roi = getattr(model, 'roi_head', None)
    if rpn is None or not hasattr(rpn, 'init_proposal_bboxes') or \
            roi is None or not hasattr(roi, 'num_stages'):
        raise TypeError(
            f'{source} is not a Sparse R-CNN (needs rpn_head with learned '
            'init_proposal_bboxes and a SparseRoIHead); got '
            f'{type(model).__name__} with rpn_head '
            f'{type(rpn).__name__} and roi_head {type(roi).__name__}')


def learned_proposals(model: Any) -> np.ndarray:
    """The learned proposal boxes as stored: ``(N, 4)`` normalised
    ``cx, cy, w, h`` (1 = the image's width or height)."""
    check_sparse_rcnn(model)
    weight = model.rpn_head.init_proposal_bboxes.weight
    return weight.detach().float().cpu().numpy().copy()


@torch.no_grad()
def trace_stages(model: Any, pipeline: Any, img_bgr: np.ndarray,
                 classes: Sequence[str]) -> StageTrace:
    """Run ``model`` on one image and keep every stage's boxes.

    Args:
        model (nn.Module): An eval-mode Sparse R-CNN detector.
        pipeline (Callable): The test pipeline that takes a BGR array (as
            ``DetInferencer.pipeline``).
        img_bgr (np.ndarray): ``(H, W, 3)`` BGR ``uint8`` image.
        classes (Sequence[str]): Class names of the model.

    Returns:
        StageTrace: With boxes mapped back to ``img_bgr``'s pixels.
    """
    from mmengine.dataset import pseudo_collate

    check_sparse_rcnn(model)
    data = model.data_preprocessor(pseudo_collate([pipeline(img_bgr)]),
                                   False)
    inputs, samples = data['inputs'], data['data_samples']
    feats = model.extract_feat(inputs)
    proposals = model.rpn_head.predict(feats, samples, rescale=False)
    outputs = model.roi_head(feats, proposals, samples)
    scale_w, scale_h = samples[0].metainfo.get('scale_factor', (1.0, 1.0))
    to_original = np.array([scale_w, scale_h, scale_w, scale_h],
                           dtype=np.float32)

    def original(boxes: torch.Tensor) -> np.ndarray:
        return boxes.float().cpu().numpy().reshape(-1, 4) / to_original

    stages = []
    for head, (cls_score, boxes) in zip(model.roi_head.bbox_head, outputs):
        probs = head.scores(cls_score[0].float())  # (N, K)
        scores, labels = probs.max(dim=-1)
        stages.append(StageBoxes(
            boxes=original(boxes[0]), scores=scores.cpu().numpy(),
            labels=labels.cpu().numpy()))
    return StageTrace(
        image=np.ascontiguousarray(img_bgr[..., ::-1]),
        proposals=original(proposals[0].bboxes),
        stages=stages,
        classes=tuple(classes))
