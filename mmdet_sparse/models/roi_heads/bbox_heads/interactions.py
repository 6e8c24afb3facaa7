"""Instance interactions usable in place of :class:`DynamicConv` in a
:class:`DIIHead` (the paper's ablations, Tables 3-5 and 9).

Each is called as ``module(proposal_feats (M, C), roi_feats (M, C, S, S))``
and returns ``(M, C_out)``, which the head adds to the proposal features.
"""
from typing import Optional

import torch
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmdet.utils import OptConfigType
from mmdet_sparse.registry import MODELS


@MODELS.register_module()
class StaticInteraction(BaseModule):
    """Faster R-CNN's static 2-fc head on the RoI feature: no parameter
    depends on the proposal feature, which is ignored.

    ``relu(fc2(relu(fc1(flatten(roi)))))``, ``C*S*S -> F -> C_out``. In a
    :class:`DIIHead` the result is added to the incoming proposal feature
    (the previous stage's object feature, or the learned initial one), which
    is the paper's "feature reuse" (Table 4) as a sum instead of a
    concatenation followed by a linear layer.

    Args:
        in_channels (int): RoI channels ``C``. Defaults to 256.
        fc_channels (int): Hidden width ``F``. Defaults to 1024.
        out_channels (int, optional): ``C_out``; ``in_channels`` when None.
        input_feat_shape (int): RoI size ``S``. Defaults to 7.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self,
                 in_channels: int = 256,
                 fc_channels: int = 1024,
                 out_channels: Optional[int] = None,
                 input_feat_shape: int = 7,
                 init_cfg: OptConfigType = None) -> None:
        super().__init__(init_cfg)
        self.in_channels = in_channels
        self.out_channels = out_channels or in_channels
        self.fc1 = nn.Linear(in_channels * input_feat_shape**2, fc_channels)
        self.fc2 = nn.Linear(fc_channels, self.out_channels)

    def forward(self, param_feature: Tensor, input_feature: Tensor) -> Tensor:
        """``(M, C)`` (unused), ``(M, C, S, S)`` -> ``(M, C_out)``."""
        x = torch.relu(self.fc1(input_feature.flatten(1)))
        return torch.relu(self.fc2(x))


@MODELS.register_module()
class AttentionInteraction(BaseModule):
    """Instance interaction by multi-head attention (Table 9): each
    proposal feature is the single query over the ``S*S`` positions of its
    own RoI feature.

    Keys are the RoI features plus a learned embedding of their position,
    values the RoI features; the output is the attention's projection.

    The position embedding ``(S*S, C)`` starts at N(0, 0.02) when the
    module stands alone; in a :class:`DIIHead`, whose ``init_weights``
    draws every matrix of the head Xavier-uniform, it starts Xavier-uniform
    like the attention's projections (bound ``sqrt(6 / (S*S + C))``).

    Args:
        in_channels (int): ``C`` (proposal and RoI channels). Defaults to
            256.
        num_heads (int): Attention heads. Defaults to 8.
        out_channels (int, optional): Must equal ``in_channels`` (or None).
        input_feat_shape (int): RoI size ``S``. Defaults to 7.
        dropout (float): Dropout on the attention weights. Defaults to 0.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self,
                 in_channels: int = 256,
                 num_heads: int = 8,
                 out_channels: Optional[int] = None,
                 input_feat_shape: int = 7,
                 dropout: float = 0.0,
                 init_cfg: OptConfigType = None) -> None:
        super().__init__(init_cfg)
        if out_channels not in (None, in_channels):
            raise ValueError('AttentionInteraction keeps the channels: '
                             f'out_channels {out_channels} != in_channels '
                             f'{in_channels}')
        self.in_channels = self.out_channels = in_channels
        self.pos_embed = nn.Parameter(
            torch.zeros(input_feat_shape**2, in_channels))
        nn.init.normal_(self.pos_embed, std=0.02)
        self.attn = nn.MultiheadAttention(
            in_channels, num_heads, dropout=dropout, batch_first=True)

    def forward(self, param_feature: Tensor, input_feature: Tensor) -> Tensor:
        """``(M, C)`` queries, ``(M, C, S, S)`` RoIs -> ``(M, C)``."""
        roi = input_feature.flatten(2).transpose(1, 2)  # (M, S*S, C)
        out = self.attn(param_feature[:, None], roi + self.pos_embed, roi,
                        need_weights=False)[0]
        return out[:, 0]
