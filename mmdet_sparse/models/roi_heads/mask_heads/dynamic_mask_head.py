"""QueryInst's dynamic mask head: one per stage of the cascade."""
import copy
from typing import Optional

import torch
from mmdet.models.roi_heads.mask_heads import \
    DynamicMaskHead as _MMDetDynamicMaskHead
from mmdet.utils import ConfigType
from torch import Tensor

from mmdet_sparse.registry import MODELS

_DYNAMIC_CONV = dict(
    type='DynamicConv',
    in_channels=256,
    feat_channels=64,
    out_channels=256,
    input_feat_shape=14,
    with_proj=False,
    act_cfg=dict(type='ReLU', inplace=True),
    norm_cfg=dict(type='LN'))


def _own_scope(cfg: ConfigType) -> dict:
    """``cfg`` with an unscoped ``type`` pinned to this package."""
    cfg = copy.deepcopy(dict(cfg))
    if isinstance(cfg.get('type'), str) and '.' not in cfg['type']:
        cfg['type'] = f'mmdet_sparse.{cfg["type"]}'
    return cfg


@MODELS.register_module()
class DynamicMaskHead(_MMDetDynamicMaskHead):
    """Mask head of QueryInst (one per stage).

    A proposal's post-attention feature ``q`` ``(C,)`` generates, through
    this package's :class:`DynamicConv` (without projection), a per-RoI
    ``1x1`` convolution of its RoI feature ``(C, S, S)``; four ``3x3``
    convolutions (with BN and ReLU), a stride-2 deconvolution and a ``1x1``
    classifier then give ``K`` mask logits of ``2S x 2S``.

    MMDetection's ``DynamicMaskHead`` is the parent: its layers, parameter
    names (checkpoints load unchanged), initialisation, ``loss_and_target``
    and ``predict_by_feat`` are kept, so this head also works inside
    MMDetection's ``SparseRoIHead``. The dynamic convolution's
    ``(M, S*S, C)`` output enters the convolutions as a channels-last view
    instead of being copied to channels-first, and :meth:`label_logits`
    gives the one class map per RoI that the loss and the predictions use,
    without the other ``K - 1`` maps.

    Args:
        dynamic_conv_cfg (dict): Config of the dynamic interaction; an
            unscoped ``type`` is looked up in this package.
        **kwargs: Arguments of MMDetection's ``DynamicMaskHead`` /
            ``FCNMaskHead`` (``num_convs``, ``roi_feat_size``,
            ``in_channels``, ``conv_out_channels``, ``num_classes``,
            ``norm_cfg``, ``upsample_cfg``, ``loss_mask``, ...).
    """

    def __init__(self,
                 dynamic_conv_cfg: ConfigType = _DYNAMIC_CONV,
                 **kwargs) -> None:
        super().__init__(
            dynamic_conv_cfg=_own_scope(dynamic_conv_cfg), **kwargs)

    def forward(self, roi_feat: Tensor, proposal_feat: Tensor) -> Tensor:
        """Mask logits of ``M`` RoIs.

        Args:
            roi_feat (Tensor): RoI features ``(M, C, S, S)``.
            proposal_feat (Tensor): Post-attention proposal features
                ``(M, C)`` (any shape with ``M*C`` elements).

        Returns:
            Tensor: ``(M, K, 2S, 2S)`` logits (``K = num_classes``).
        """
        return self.conv_logits(self.forward_features(roi_feat,
                                                      proposal_feat))

    def forward_features(self, roi_feat: Tensor,
                         proposal_feat: Tensor) -> Tensor:
        """The features ``(M, C', 2S, 2S)`` the classifier sees (arguments
        as :meth:`forward`)."""
        num_rois, channels, height, width = roi_feat.shape
        feats = self.instance_interactive_conv(
            proposal_feat.reshape(-1, self.in_channels), roi_feat)
        # (M, S*S, C) is the channels-last layout of (M, C, S, S).
        x = feats.view(num_rois, height, width,
                       feats.size(-1)).permute(0, 3, 1, 2)
        for conv in self.convs:
            x = conv(x)
        if self.upsample is not None:
            x = self.upsample(x)
            if self.upsample_method == 'deconv':
                x = self.relu(x)
        return x

    def label_logits(self,
                     feats: Tensor,
                     labels: Tensor,
                     rows: Optional[Tensor] = None) -> Tensor:
        """The logits of one class per RoI: ``conv_logits`` restricted to
        the channel ``labels[i]`` of RoI ``rows[i]`` (the only logits the
        loss and the predictions use).

        Args:
            feats (Tensor): :meth:`forward_features` output
                ``(M, C', H, W)``.
            labels (Tensor): ``(n,)`` class of each wanted map (ignored by
                a class-agnostic head).
            rows (Tensor, optional): ``(n,)`` RoI of each wanted map;
                ``arange(M)`` when None.

        Returns:
            Tensor: ``(n, H, W)`` logits.
        """
        if self.class_agnostic:
            labels = torch.zeros_like(labels)
        weight = self.conv_logits.weight.flatten(1)[labels]  # (n, C')
        bias = self.conv_logits.bias[labels]
        if rows is not None:
            feats = feats[rows]
        num, channels, height, width = feats.shape
        pixels = feats.permute(0, 2, 3, 1).reshape(num, height * width,
                                                   channels)
        logits = torch.baddbmm(bias[:, None, None], pixels, weight[:, :,
                                                                   None])
        return logits.view(num, height, width)
