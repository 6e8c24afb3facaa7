"""Learnable proposal boxes and proposal features of Sparse R-CNN."""
import math
import warnings
from typing import List, Optional, Tuple

import torch
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor, nn

from mmdet.structures import SampleList
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from mmdet.utils import InstanceList, OptConfigType
from mmdet_sparse.registry import MODELS


#: Initial proposal boxes of :class:`EmbeddingRPNHead` (``init_boxes``).
INIT_BOXES = ('image', 'center', 'grid', 'random', 'dataset')
#: ``'center'`` boxes: width and height as a fraction of the image.
CENTER_BOX_SIZE = 0.1
#: ``'random'`` boxes: mean and std of the normalised ``(cx, cy, w, h)``;
#: centres are clamped into ``[0, 1]``, sizes into ``[0.02, 1]``.
RANDOM_BOX_MEAN = (0.5, 0.5, 0.5, 0.5)
RANDOM_BOX_STD = (0.2, 0.2, 0.2, 0.2)


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
    ``init_boxes`` chooses them (the paper's Table 6):

    * ``'image'`` (the paper's default, and MMDetection's): every box is the
      whole image;
    * ``'center'``: every box is centred, ``0.1`` of the image wide and high;
    * ``'grid'``: centres on a regular ``k x k`` grid (``k =
      ceil(sqrt(N))``, evenly chosen cells when ``N < k*k``), each ``2/k``
      of the image wide and high. Grid boxes give the first stage distinct
      RoIs from the first iteration, which speeds up short trainings from
      scratch;
    * ``'random'``: centre and size drawn from Gaussians
      (:data:`RANDOM_BOX_MEAN`, :data:`RANDOM_BOX_STD`, clamped into the
      image) with a generator seeded by ``init_seed``, so the same seed gives
      the same boxes whatever the global random state;
    * ``'dataset'``: k-means centres of the training set's boxes, which
      :class:`~mmdet_sparse.engine.DatasetProposalInitHook` computes and
      copies in (:meth:`set_proposal_boxes`) before the first iteration of a
      training from scratch. Until then (and in a model built without the
      hook) the boxes are the whole image; a checkpoint holds the computed
      boxes like learned ones.

    Args:
        num_proposals (int): Number of proposals ``N``. Defaults to 100.
        proposal_feature_channel (int): Channels ``C`` of a proposal feature.
            Defaults to 256.
        init_boxes (str): One of :data:`INIT_BOXES`. Defaults to
            ``'image'``.
        init_seed (int): Seed of the ``'random'`` boxes. Defaults to 0.
        train_cfg, test_cfg, num_classes: Accepted because two-stage
            detectors pass them to every RPN head; unused.
        init_cfg (dict, optional): Must be None: the initialisation is fixed.
    """

    def __init__(self,
                 num_proposals: int = 100,
                 proposal_feature_channel: int = 256,
                 init_boxes: str = 'image',
                 init_seed: int = 0,
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
        if init_boxes not in INIT_BOXES:
            raise ValueError(f'init_boxes must be one of {INIT_BOXES}, got '
                             f'{init_boxes!r}')
        self.num_proposals = num_proposals
        self.init_boxes = init_boxes
        self.init_seed = init_seed
        # Whether the 'dataset' boxes were set (by the hook or a checkpoint).
        self._boxes_from_data = False
        self.proposal_feature_channel = proposal_feature_channel
        self.init_proposal_bboxes = nn.Embedding(num_proposals, 4)
        self.init_proposal_features = nn.Embedding(num_proposals,
                                                   proposal_feature_channel)
        self._reset_proposal_boxes()

    @torch.no_grad()
    def _reset_proposal_boxes(self) -> None:
        """Normalised ``(cx, cy, w, h)`` of ``init_boxes``."""
        weight = self.init_proposal_bboxes.weight
        num = self.num_proposals
        if self.init_boxes in ('image', 'dataset'):
            weight[:, :2] = 0.5
            weight[:, 2:] = 1.0
        elif self.init_boxes == 'center':
            weight[:, :2] = 0.5
            weight[:, 2:] = CENTER_BOX_SIZE
        elif self.init_boxes == 'random':
            gen = torch.Generator().manual_seed(self.init_seed)
            boxes = torch.randn(num, 4, generator=gen) * torch.tensor(
                RANDOM_BOX_STD) + torch.tensor(RANDOM_BOX_MEAN)
            boxes[:, :2].clamp_(0.0, 1.0)
            boxes[:, 2:].clamp_(0.02, 1.0)
            weight.copy_(boxes)
        else:  # grid
            side = math.ceil(math.sqrt(num))
            cells = torch.linspace(0, side * side - 1, num).round().long()
            weight[:, 0] = ((cells % side).to(weight) + 0.5) / side
            weight[:, 1] = (torch.div(cells, side, rounding_mode='floor')
                            .to(weight) + 0.5) / side
            weight[:, 2:] = min(1.0, 2.0 / side)

    @torch.no_grad()
    def set_proposal_boxes(self, boxes: Tensor) -> None:
        """Copy normalised ``(cx, cy, w, h)`` boxes ``(N, 4)`` into the
        learnable proposal boxes (the ``'dataset'`` initialisation)."""
        weight = self.init_proposal_bboxes.weight
        if tuple(boxes.shape) != tuple(weight.shape):
            raise ValueError(f'expected {tuple(weight.shape)} boxes, got '
                             f'{tuple(boxes.shape)}')
        if not bool(torch.isfinite(boxes).all()) or bool(
                (boxes[:, 2:] <= 0).any()):
            raise ValueError('proposal boxes must be finite with positive '
                             'width and height')
        weight.copy_(boxes.to(weight))
        self._boxes_from_data = True

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        """Boxes loaded from a checkpoint count as set."""
        super()._load_from_state_dict(*args, **kwargs)
        self._boxes_from_data = True

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
        if (self.training and self.init_boxes == 'dataset'
                and not self._boxes_from_data):
            self._boxes_from_data = True  # warn once
            warnings.warn(
                "EmbeddingRPNHead(init_boxes='dataset') trains from "
                'whole-image boxes: no DatasetProposalInitHook set the '
                "dataset's boxes and no checkpoint was loaded")
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
