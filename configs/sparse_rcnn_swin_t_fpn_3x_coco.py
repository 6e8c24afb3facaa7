# Sparse R-CNN, Swin-T backbone (MMDetection's SwinTransformer), 100
# proposals, multi-scale 3x schedule.
_base_ = ['./sparse_rcnn_r50_fpn_3x_coco.py', './_base_/models/swin_t.py']

# Local ImageNet-1k Swin-T weights (official release file, converted on load);
# edit the path.
# To train from scratch pass `--cfg-options model.backbone.init_cfg=None`;
# setting `pretrained` to None instead stops init_weights with a TypeError.
pretrained = 'checkpoints/swin_tiny_patch4_window7_224.pth'
model = dict(
    backbone=dict(
        _base_.swin_t_backbone,
        _delete_=True,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=_base_.swin_t_out_channels))

# Base AdamW; no weight decay on Swin's position tables and norms.
optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys={
            'absolute_pos_embed': dict(decay_mult=0.),
            'relative_position_bias_table': dict(decay_mult=0.),
            'norm': dict(decay_mult=0.)
        }))
