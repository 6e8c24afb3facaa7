"""Dynamic instance interaction: a 1x1 convolution whose weights each
proposal generates from its own feature."""
from typing import Optional

import torch
import torch.nn.functional as F
from mmcv.cnn import build_activation_layer, build_norm_layer
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmdet.utils import OptConfigType
from mmdet_sparse.registry import MODELS


class _SplitLinear(torch.autograd.Function):
    """``linear(x, W, b)`` returned as two column blocks ``(M, n1)``,
    ``(M, n2)``.

    Forward is exactly ``F.linear`` followed by a split. Backward takes the
    two block gradients as they come and writes the weight gradient block by
    block, instead of first concatenating a ``(M, n1 + n2)`` gradient (what
    autograd does for ``split``, and worse, zero-fills, for slicing).
    Under autocast the inputs are cast to the autocast dtype first, as
    autocast does for ``F.linear``, so that forward and backward run in one
    dtype (autograd casts the gradients back to the parameters' dtype).
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, n1: int):
        device = x.device.type
        if torch.is_autocast_enabled(device):
            dtype = torch.get_autocast_dtype(device)
            x, weight, bias = x.to(dtype), weight.to(dtype), bias.to(dtype)
        ctx.save_for_backward(x, weight)
        ctx.n1 = n1
        with torch.autocast(device, enabled=False):
            out = F.linear(x, weight, bias)
        return out[:, :n1], out[:, n1:]

    @staticmethod
    def backward(ctx, grad1: Tensor, grad2: Tensor):
        x, weight = ctx.saved_tensors
        n1 = ctx.n1
        grads = [g if g is not None else x.new_zeros(()) for g in (grad1,
                                                                  grad2)]
        grad1, grad2 = (g.expand(x.size(0), size) if g.dim() == 0 else g
                        for g, size in zip(grads, (n1, weight.size(0) - n1)))
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.addmm(grad1 @ weight[:n1], grad2, weight[n1:])
        if ctx.needs_input_grad[1]:
            grad_w = weight.new_empty(weight.shape)
            torch.mm(grad1.t(), x, out=grad_w[:n1])
            torch.mm(grad2.t(), x, out=grad_w[n1:])
        if ctx.needs_input_grad[2]:
            grad_b = torch.cat([grad1.sum(0), grad2.sum(0)])
        return grad_x, grad_w, grad_b, None


@MODELS.register_module()
class DynamicConv(BaseModule):
    """Per-proposal dynamic convolution of Sparse R-CNN.

    For ``M`` proposals with features ``q`` ``(M, C_in)`` and RoI features
    ``r`` ``(M, C_in, S, S)``, a linear layer turns ``q`` into two weight
    matrices per proposal, ``W1`` ``(C_in, F)`` and ``W2`` ``(F, C_out)``.
    Then ``relu(LN(relu(LN(r^T W1)) W2))`` maps the ``S*S`` RoI positions to
    ``(S*S, C_out)``, which a linear projection turns into ``(M, C_out)``.

    Args:
        in_channels (int): ``C_in``. Defaults to 256.
        feat_channels (int): Inner width ``F``. Defaults to 64.
        out_channels (int, optional): ``C_out``; ``in_channels`` when None.
        input_feat_shape (int): RoI size ``S``. Defaults to 7.
        with_proj (bool): Flatten ``(S*S, C_out)`` and project it to
            ``C_out``. Defaults to True.
        act_cfg (dict): Activation. Defaults to in-place ReLU.
        norm_cfg (dict): Normalisation. Defaults to LayerNorm.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self,
                 in_channels: int = 256,
                 feat_channels: int = 64,
                 out_channels: Optional[int] = None,
                 input_feat_shape: int = 7,
                 with_proj: bool = True,
                 act_cfg: OptConfigType = dict(type='ReLU', inplace=True),
                 norm_cfg: OptConfigType = dict(type='LN'),
                 init_cfg: OptConfigType = None) -> None:
        super().__init__(init_cfg)
        self.in_channels = in_channels
        self.feat_channels = feat_channels
        self.out_channels = out_channels or in_channels
        self.input_feat_shape = input_feat_shape
        self.with_proj = with_proj
        self.num_params_in = in_channels * feat_channels
        self.num_params_out = self.out_channels * feat_channels

        self.dynamic_layer = nn.Linear(
            in_channels, self.num_params_in + self.num_params_out)
        self.norm_in = build_norm_layer(norm_cfg, feat_channels)[1]
        self.norm_out = build_norm_layer(norm_cfg, self.out_channels)[1]
        self.activation = build_activation_layer(act_cfg)
        if with_proj:
            self.fc_layer = nn.Linear(self.out_channels * input_feat_shape**2,
                                      self.out_channels)
            self.fc_norm = build_norm_layer(norm_cfg, self.out_channels)[1]

    def forward(self, param_feature: Tensor, input_feature: Tensor) -> Tensor:
        """Interact each proposal's feature with its RoI feature.

        Args:
            param_feature (Tensor): Proposal features ``(M, C_in)``.
            input_feature (Tensor): RoI features ``(M, C_in, S, S)``.

        Returns:
            Tensor: ``(M, C_out)`` with ``with_proj``, else
            ``(M, S*S, C_out)``.
        """
        num_rois = param_feature.size(0)
        param_in, param_out = _SplitLinear.apply(param_feature,
                                                 self.dynamic_layer.weight,
                                                 self.dynamic_layer.bias,
                                                 self.num_params_in)
        param_in = param_in.view(num_rois, self.in_channels,
                                 self.feat_channels)
        param_out = param_out.view(num_rois, self.feat_channels,
                                   self.out_channels)

        roi = input_feature.flatten(2).transpose(1, 2)  # (M, S*S, C_in)
        feats = self.activation(self.norm_in(torch.bmm(roi, param_in)))
        feats = self.activation(self.norm_out(torch.bmm(feats, param_out)))
        if not self.with_proj:
            return feats
        return self.activation(self.fc_norm(self.fc_layer(feats.flatten(1))))
