"""Dynamic Instance Interactive head: one refinement stage of Sparse R-CNN."""
import math
from typing import Dict, Optional, Sequence, Tuple

from mmcv.cnn import build_activation_layer, build_norm_layer
from mmcv.cnn.bricks.transformer import FFN
from mmengine.model import BaseModule, bias_init_with_prob
import torch
from torch import Tensor, nn

from mmdet.models.losses import accuracy
from mmdet.utils import ConfigType, OptConfigType
from mmdet_sparse.registry import MODELS, TASK_UTILS


class ProposalSelfAttention(nn.Module):
    """Residual multi-head self-attention among the proposals of an image.

    Args:
        embed_dims (int): Channels ``C``.
        num_heads (int): Attention heads.
        dropout (float): Dropout on the attention weights.
    """

    def __init__(self, embed_dims: int, num_heads: int,
                 dropout: float) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(
            embed_dims, num_heads, dropout=dropout, batch_first=True)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, N, C)`` -> ``(B, N, C)``: ``x + attention(x, x, x)``.

        The explicit-softmax path (``need_weights=True``) is kept on
        purpose: it rounds exactly as MMDetection's head does, and at
        ``N <= 300`` proposals attention is a negligible share of the head.
        """
        return x + self.attn(x, x, x)[0]


#: Upper clamp of dw, dh in the authors' detectron2 code: log(100000 / 16).
D2_SCALE_CLAMP = math.log(100000.0 / 16)


def apply_deltas_d2(boxes: Tensor, deltas: Tensor, stds: Sequence[float],
                    scale_clamp: float = D2_SCALE_CLAMP) -> Tensor:
    """Decode deltas as the Sparse R-CNN authors' detectron2 head does.

    Same operations in the same order as their ``RCNNHead.apply_deltas``
    (bitwise equal results): centre ``x1 + w / 2``, deltas divided by the
    weights ``1 / std``, ``dw``/``dh`` clamped from above only.

    Args:
        boxes (Tensor): ``(n, 4)`` xyxy boxes.
        deltas (Tensor): ``(n, 4)`` ``(dx, dy, dw, dh)``.
        stds (Sequence[float]): The coder's ``target_stds``; the authors'
            weights are their inverses, (2, 2, 1, 1).
        scale_clamp (float): Upper bound of ``dw``, ``dh``.

    Returns:
        Tensor: ``(n, 4)`` decoded xyxy boxes.
    """
    weights = deltas.new_tensor([1.0 / s for s in stds])
    wh = boxes[:, 2:] - boxes[:, :2]
    ctr = boxes[:, :2] + 0.5 * wh
    deltas = deltas / weights
    dwh = torch.clamp(deltas[:, 2:], max=scale_clamp)
    pred_ctr = deltas[:, :2] * wh + ctr
    pred_wh = torch.exp(dwh) * wh
    return torch.cat([pred_ctr - 0.5 * pred_wh, pred_ctr + 0.5 * pred_wh], 1)


def box_sine_encoding(boxes: Tensor, channels: int,
                      temperature: float = 10000.0) -> Tensor:
    """Sinusoidal encoding of normalised boxes (DETR's, per coordinate).

    Args:
        boxes (Tensor): ``(..., 4)`` xyxy boxes divided by the image's
            ``(w, h, w, h)``.
        channels (int): ``C``, a multiple of 8: ``C / 4`` channels for each
            of ``cx, cy, w, h``, half sines and half cosines.
        temperature (float): Wavelength base.

    Returns:
        Tensor: ``(..., C)``.
    """
    cxcywh = torch.cat([(boxes[..., :2] + boxes[..., 2:]) / 2,
                        boxes[..., 2:] - boxes[..., :2]], -1).float()
    quarter = channels // 4
    freq = temperature**(torch.arange(
        quarter // 2, device=boxes.device, dtype=torch.float32) * 2 /
                         quarter)
    angles = cxcywh[..., None] * (2 * math.pi) / freq  # (..., 4, C/8)
    enc = torch.cat([angles.sin(), angles.cos()], -1)  # (..., 4, C/4)
    return enc.flatten(-2).to(boxes.dtype)


def _fc_branch(channels: int, num_fcs: int) -> nn.ModuleList:
    """``num_fcs`` x [Linear(no bias), LayerNorm, ReLU]."""
    layers = nn.ModuleList()
    for _ in range(num_fcs):
        layers.append(nn.Linear(channels, channels, bias=False))
        layers.append(build_norm_layer(dict(type='LN'), channels)[1])
        layers.append(build_activation_layer(dict(type='ReLU', inplace=True)))
    return layers


@MODELS.register_module()
class DIIHead(BaseModule):
    """One Sparse R-CNN stage: self-attention among proposals, dynamic
    instance interaction with the RoI features, FFN, then classification and
    box-delta branches.

    Post-norm residual blocks; parameter names follow MMDetection's
    ``DIIHead`` so that its checkpoints load unchanged.

    Args:
        num_classes (int): Foreground classes ``K``. Defaults to 80.
        num_ffn_fcs (int): Linear layers in the FFN. Defaults to 2.
        num_heads (int): Self-attention heads. Defaults to 8.
        num_cls_fcs (int): Hidden layers of the class branch. Defaults to 1.
        num_reg_fcs (int): Hidden layers of the box branch. Defaults to 3.
        feedforward_channels (int): FFN hidden width. Defaults to 2048.
        in_channels (int): Proposal feature channels ``C``. Defaults to 256.
        dropout (float): Dropout in attention, interaction and FFN.
        ffn_act_cfg (dict): FFN activation.
        dynamic_conv_cfg (dict): Config of the instance interaction:
            :class:`DynamicConv` (the paper's), or a module with the same
            call ``(M, C) proposal, (M, C, S, S) RoI -> (M, C)``
            (:class:`StaticInteraction`, :class:`AttentionInteraction`);
            ``in_channels`` defaults to this head's.
        loss_cls (dict): Classification loss; sigmoid focal loss by default,
            which predicts no background logit.
        loss_bbox (dict): L1 loss on boxes normalised by image size.
        loss_iou (dict): IoU-type loss on pixel boxes.
        bbox_coder (dict): Coder that applies the deltas to the boxes.
        with_self_attn (bool): Self-attention among the proposals before the
            interaction (the paper's Table 5). Without it the module is
            absent and the post-attention features are the input features.
            Defaults to True.
        pos_encoding (bool): Add a sinusoidal encoding of the current boxes
            (:func:`box_sine_encoding`, no parameters) to the proposal
            features first (Table 10); :meth:`forward` then needs ``boxes``.
            Defaults to False.
        decode_style (str): ``'mmdet'`` (default): ``bbox_coder.decode``,
            whose ``dw``/``dh`` clamp is ``|log(16/1000)|`` on both sides.
            ``'detectron2'``: the authors' arithmetic
            (:func:`apply_deltas_d2`): clamp only from above, at
            ``log(100000/16)``, so a whole-image proposal can shrink onto a
            small object (``dw < -4.14``) in one stage. Uses the coder's
            ``target_stds``; its means must be zero.
        init_cfg (dict, optional): Must be None: initialisation is fixed.
    """

    def __init__(self,
                 num_classes: int = 80,
                 num_ffn_fcs: int = 2,
                 num_heads: int = 8,
                 num_cls_fcs: int = 1,
                 num_reg_fcs: int = 3,
                 feedforward_channels: int = 2048,
                 in_channels: int = 256,
                 dropout: float = 0.0,
                 ffn_act_cfg: ConfigType = dict(type='ReLU', inplace=True),
                 dynamic_conv_cfg: ConfigType = dict(
                     type='DynamicConv',
                     in_channels=256,
                     feat_channels=64,
                     out_channels=256,
                     input_feat_shape=7,
                     act_cfg=dict(type='ReLU', inplace=True),
                     norm_cfg=dict(type='LN')),
                 loss_cls: ConfigType = dict(
                     type='FocalLoss',
                     use_sigmoid=True,
                     gamma=2.0,
                     alpha=0.25,
                     loss_weight=2.0),
                 loss_bbox: ConfigType = dict(type='L1Loss', loss_weight=5.0),
                 loss_iou: ConfigType = dict(type='GIoULoss', loss_weight=2.0),
                 bbox_coder: ConfigType = dict(
                     type='DeltaXYWHBBoxCoder',
                     clip_border=False,
                     target_means=[0., 0., 0., 0.],
                     target_stds=[0.5, 0.5, 1., 1.]),
                 decode_style: str = 'mmdet',
                 with_self_attn: bool = True,
                 pos_encoding: bool = False,
                 init_cfg: OptConfigType = None,
                 **kwargs) -> None:
        if init_cfg is not None:
            raise ValueError('DIIHead has a fixed initialisation; '
                             f'got init_cfg={init_cfg!r}')
        # Keys of MMDetection's generic BBoxHead that do not apply here.
        ignored = {'reg_class_agnostic', 'reg_decoded_bbox', 'roi_feat_size'}
        unknown = set(kwargs) - ignored
        if unknown:
            raise TypeError(f'DIIHead got unexpected arguments {unknown}')
        super().__init__(init_cfg=None)
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.loss_cls = MODELS.build(loss_cls)
        self.loss_bbox = MODELS.build(loss_bbox)
        self.loss_iou = MODELS.build(loss_iou)
        self.bbox_coder = TASK_UTILS.build(bbox_coder)
        if decode_style not in ('mmdet', 'detectron2'):
            raise ValueError("DIIHead decode_style must be 'mmdet' or "
                             f"'detectron2', got {decode_style!r}")
        if decode_style == 'detectron2' and any(
                getattr(self.bbox_coder, 'means', (1, ))):
            raise ValueError("decode_style='detectron2' needs a bbox_coder "
                             'with target_means 0 and target_stds; got '
                             f'{bbox_coder}')
        self.decode_style = decode_style
        self.use_sigmoid = self.loss_cls.use_sigmoid

        if pos_encoding and in_channels % 8:
            raise ValueError('pos_encoding needs in_channels divisible by 8, '
                             f'got {in_channels}')
        self.with_self_attn = with_self_attn
        self.pos_encoding = pos_encoding
        if with_self_attn:
            self.attention = ProposalSelfAttention(in_channels, num_heads,
                                                   dropout)
            self.attention_norm = build_norm_layer(dict(type='LN'),
                                                   in_channels)[1]
        interaction = dict(dynamic_conv_cfg)
        interaction.setdefault('in_channels', in_channels)
        self.instance_interactive_conv = MODELS.build(interaction)
        self.instance_interactive_conv_dropout = nn.Dropout(dropout)
        self.instance_interactive_conv_norm = build_norm_layer(
            dict(type='LN'), in_channels)[1]
        self.ffn = FFN(
            in_channels,
            feedforward_channels,
            num_ffn_fcs,
            act_cfg=ffn_act_cfg,
            ffn_drop=dropout)
        self.ffn_norm = build_norm_layer(dict(type='LN'), in_channels)[1]

        self.cls_fcs = _fc_branch(in_channels, num_cls_fcs)
        self.fc_cls = nn.Linear(
            in_channels, num_classes if self.use_sigmoid else num_classes + 1)
        self.reg_fcs = _fc_branch(in_channels, num_reg_fcs)
        self.fc_reg = nn.Linear(in_channels, 4)

    def init_weights(self) -> None:
        """Xavier-uniform on every matrix; focal prior 0.01 on the class
        bias; zero box bias; LayerNorms keep their defaults."""
        super().init_weights()
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        nn.init.zeros_(self.fc_reg.bias)
        if self.use_sigmoid:
            nn.init.constant_(self.fc_cls.bias, bias_init_with_prob(0.01))
        else:
            nn.init.zeros_(self.fc_cls.bias)

    def forward(self,
                roi_feats: Tensor,
                proposal_feats: Tensor,
                boxes: Optional[Tensor] = None) -> Tuple[Tensor, Tensor,
                                                         Tensor, Tensor]:
        """Refine the proposal features of a batch.

        Args:
            roi_feats (Tensor): ``(B*N, C, S, S)``, image-major.
            proposal_feats (Tensor): ``(B, N, C)``.
            boxes (Tensor, optional): ``(B, N, 4)`` current xyxy boxes
                divided by the image's ``(w, h, w, h)``; needed (only) with
                ``pos_encoding``.

        Returns:
            tuple[Tensor]: class logits ``(B, N, K)`` (``K+1`` with softmax),
            box deltas ``(B, N, 4)``, new proposal features ``(B, N, C)``
            and the post-attention features ``(B, N, C)``.
        """
        num_imgs, num_proposals, channels = proposal_feats.shape
        if self.pos_encoding:
            if boxes is None:
                raise ValueError(
                    'DIIHead(pos_encoding=True) needs the normalised boxes: '
                    'call head(roi_feats, proposal_feats, boxes)')
            proposal_feats = proposal_feats + box_sine_encoding(
                boxes, channels).to(proposal_feats.dtype)
        if self.with_self_attn:
            attn_feats = self.attention_norm(self.attention(proposal_feats))
        else:
            attn_feats = proposal_feats

        feats = attn_feats.reshape(-1, channels)
        interact = self.instance_interactive_conv(feats, roi_feats)
        feats = self.instance_interactive_conv_norm(
            feats + self.instance_interactive_conv_dropout(interact))
        obj_feats = self.ffn_norm(self.ffn(feats))

        cls_feat = obj_feats
        for layer in self.cls_fcs:
            cls_feat = layer(cls_feat)
        reg_feat = obj_feats
        for layer in self.reg_fcs:
            reg_feat = layer(reg_feat)
        cls_score = self.fc_cls(cls_feat).view(num_imgs, num_proposals, -1)
        deltas = self.fc_reg(reg_feat).view(num_imgs, num_proposals, 4)
        return (cls_score, deltas,
                obj_feats.view(num_imgs, num_proposals, channels), attn_feats)

    def refine_bboxes(self, *args, **kwargs):
        """Not this head's interface: MMDetection's ``SparseRoIHead`` calls
        it, this package's :class:`SparseRoIHead` uses :meth:`decode`."""
        raise TypeError(
            "mmdet_sparse's DIIHead is driven by mmdet_sparse's "
            "SparseRoIHead: use type='SparseRoIHead' (scope mmdet_sparse), "
            "or MMDetection's heads together: type='mmdet.SparseRoIHead' "
            "with bbox_head type='mmdet.DIIHead' (and train_cfg.rcnn a list "
            'of one dict per stage)')

    def decode(self, boxes: Tensor, deltas: Tensor) -> Tensor:
        """Apply deltas ``(..., 4)`` to boxes ``(..., 4)``, in float32, in
        the arithmetic of ``decode_style``."""
        shape = boxes.shape
        boxes = boxes.reshape(-1, 4).float()
        deltas = deltas.reshape(-1, 4).float()
        if self.decode_style == 'detectron2':
            return apply_deltas_d2(boxes, deltas,
                                   self.bbox_coder.stds).view(shape)
        return self.bbox_coder.decode(boxes, deltas).view(shape)

    def scores(self, cls_score: Tensor) -> Tensor:
        """Foreground probabilities ``(..., K)`` from logits."""
        if self.use_sigmoid:
            return cls_score.sigmoid()
        return cls_score.softmax(-1)[..., :-1]

    def loss(self, cls_score: Tensor, boxes: Tensor, labels: Tensor,
             label_weights: Tensor, pos_mask: Tensor, pos_gt_boxes: Tensor,
             pos_whwh: Tensor, avg_factor: Tensor) -> Dict[str, Tensor]:
        """Losses of one stage for a batch whose matching is known.

        Args:
            cls_score (Tensor): Logits ``(P, K)`` of all ``P = B*N``
                proposals.
            boxes (Tensor): Decoded boxes ``(P, 4)``, xyxy pixels.
            labels (Tensor): ``(P,)`` target class, ``K`` for background.
            label_weights (Tensor): ``(P,)`` classification weights.
            pos_mask (Tensor): ``(P,)`` bool, proposals matched to a box.
            pos_gt_boxes (Tensor): ``(Q, 4)`` matched boxes, in proposal
                order, ``Q = pos_mask.sum()``.
            pos_whwh (Tensor): ``(Q, 4)`` image ``(w, h, w, h)`` of each.
            avg_factor (Tensor): Normaliser (matched boxes, averaged over
                processes).

        Returns:
            dict[str, Tensor]: ``loss_cls``, ``pos_acc``, ``loss_bbox``,
            ``loss_iou``.
        """
        cls_score = cls_score.float()
        losses = dict(
            loss_cls=self.loss_cls(
                cls_score,
                labels,
                label_weights,
                avg_factor=avg_factor),
            pos_acc=accuracy(cls_score[pos_mask], labels[pos_mask]))
        if pos_gt_boxes.numel() == 0:
            zero = boxes.sum() * 0
            losses.update(loss_bbox=zero, loss_iou=zero)
            return losses
        pos_boxes = boxes[pos_mask].float()
        losses['loss_bbox'] = self.loss_bbox(
            pos_boxes / pos_whwh, pos_gt_boxes / pos_whwh,
            avg_factor=avg_factor)
        losses['loss_iou'] = self.loss_iou(
            pos_boxes, pos_gt_boxes, avg_factor=avg_factor)
        return losses
