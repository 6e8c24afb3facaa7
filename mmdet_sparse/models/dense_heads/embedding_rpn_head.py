"""Learnable proposal boxes and proposal features of Sparse R-CNN."""
import math
from typing import List, Optional, Tuple

import torch
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor, nn

from mmdet.structures import SampleList
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from mmdet.utils import InstanceList, OptConfigType
from mmdet_sparse.registry import MODELS


def images_whwh(batch_img_metas: List[dict], like: Tensor) -> Tensor:
    """``(B, 4)`` tensor of ``(w, h, w, h)`` of each image's unpadded shape."""
    sizes = [meta['img_shape'][:2] for meta in batch_img_metas]
    return like.new_tensor([[w, h, w, h] for h, w in sizes])


@MODELS.register_module()
class EmbeddingRPNHead(BaseModule):
    """A fixed, learnable set of proposals (Sparse R-CNN's "RPN").

    The head owns ``N`` proposal boxes, stored as normalised
    ``(cx, cy, w, h)`` in an ``nn.Embedding(N, 4)``, and ``N`` proposal
    features in an ``nn.Embedding(N, C)``. For each image it scales the boxes
    by the unpadded image size, so that at initialisation every proposal is
    the whole image. It looks at no image feature.

    The boxes are set at construction *and* in :meth:`init_weights`, so a
    model used without ``init_weights()`` still starts from valid boxes.
    ``init_boxes='image'`` (the paper's default, and MMDetection's) makes
    every box the whole image; ``'grid'`` centres them on a regular
    ``k x k`` grid (``k = ceil(sqrt(N))``, evenly chosen cells when
    ``N < k*k``), each ``2/k`` of the image wide and high. Grid boxes give
    the first stage distinct RoIs from the first iteration, which speeds up
    short trainings from scratch.

    Args:
        num_proposals (int): Number of proposals ``N``. Defaults to 100.
        proposal_feature_channel (int): Channels ``C`` of a proposal feature.
            Defaults to 256.
        init_boxes (str): ``'image'`` or ``'grid'``. Defaults to
            ``'image'``.
        train_cfg, test_cfg, num_classes: Accepted because two-stage
            detectors pass them to every RPN head; unused.
        init_cfg (dict, optional): Must be None: the initialisation is fixed.
    """

    def __init__(self,
                 num_proposals: int = 100,
                 proposal_feature_channel: int = 256,
                 init_boxes: str = 'image',
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 num_classes: Optional[int] = None,
                 init_cfg: OptConfigType = None) -> None:
        if init_cfg is not None:
            raise ValueError('EmbeddingRPNHead has a fixed initialisation; '
                             f'got init_cfg={init_cfg!r}')
        super().__init__(init_cfg=None)
        if num_proposals <= 0:
            raise ValueError(
                f'num_proposals must be positive, got {num_proposals}')
        if init_boxes not in ('image', 'grid'):
            raise ValueError("init_boxes must be 'image' or 'grid', got "
                             f'{init_boxes!r}')
        self.num_proposals = num_proposals
        self.init_boxes = init_boxes
        self.proposal_feature_channel = proposal_feature_channel
        self.init_proposal_bboxes = nn.Embedding(num_proposals, 4)
        self.init_proposal_features = nn.Embedding(num_proposals,
                                                   proposal_feature_channel)
        self._reset_proposal_boxes()

    @torch.no_grad()
    def _reset_proposal_boxes(self) -> None:
        """Normalised ``(cx, cy, w, h)``: the whole image or grid cells."""
        weight = self.init_proposal_bboxes.weight
        if self.init_boxes == 'image':
            weight[:, :2] = 0.5
            weight[:, 2:] = 1.0
            return
        side = math.ceil(math.sqrt(self.num_proposals))
        cells = torch.linspace(0, side * side - 1,
                               self.num_proposals).round().long()
        weight[:, 0] = ((cells % side).to(weight) + 0.5) / side
        weight[:, 1] = (torch.div(cells, side, rounding_mode='floor')
                        .to(weight) + 0.5) / side
        weight[:, 2:] = min(1.0, 2.0 / side)

    def init_weights(self) -> None:
        """Features keep ``nn.Embedding``'s N(0, 1); boxes are reset."""
        super().init_weights()
        self._reset_proposal_boxes()

    def forward(self, batch_img_metas: List[dict]) -> Tuple[Tensor, Tensor]:
        """Proposals of a batch as tensors.

        Args:
            batch_img_metas (list[dict]): ``B`` image metas with ``img_shape``.

        Returns:
            tuple[Tensor, Tensor]: boxes ``(B, N, 4)`` in pixel ``xyxy`` of
            each unpadded image, and features ``(B, N, C)``.
        """
        weight = self.init_proposal_bboxes.weight
        whwh = images_whwh(batch_img_metas, weight)
        boxes = bbox_cxcywh_to_xyxy(weight)[None] * whwh[:, None]
        feats = self.init_proposal_features.weight[None].expand(
            len(batch_img_metas), -1, -1)
        return boxes, feats

    def predict(self, x: Tuple[Tensor], batch_data_samples: SampleList,
                **kwargs) -> InstanceList:
        """Proposals of each image as ``InstanceData``.

        Args:
            x (tuple[Tensor]): Multi-level features; unused.
            batch_data_samples (list[DetDataSample]): Samples with metainfo.
            **kwargs: ``rescale`` etc. from the detector; unused.

        Returns:
            list[InstanceData]: per image ``bboxes`` ``(N, 4)`` (xyxy pixels),
            ``features`` ``(N, C)`` and ``imgs_whwh`` ``(N, 4)`` (the
            unpadded image's ``(w, h, w, h)`` per proposal, which
            MMDetection's ``SparseRoIHead`` reads).
        """
        metas = [s.metainfo for s in batch_data_samples]
        boxes, feats = self(metas)
        whwh = images_whwh(metas, boxes)[:, None].expand(boxes.shape)
        return [
            InstanceData(bboxes=b, features=f, imgs_whwh=wh)
            for b, f, wh in zip(boxes, feats, whwh)
        ]

    def loss_and_predict(self, x: Tuple[Tensor],
                         batch_data_samples: SampleList,
                         **kwargs) -> Tuple[dict, InstanceList]:
        """No loss of its own; the RoI head trains the proposals."""
        return dict(), self.predict(x, batch_data_samples)

    def loss(self, *args, **kwargs) -> dict:
        raise NotImplementedError(
            'EmbeddingRPNHead has no loss of its own; the detector calls '
            '`loss_and_predict`, and the RoI head trains the proposals.')
