# Sparse R-CNN, Swin-T backbone (MMDetection's SwinTransformer), 100
# proposals, multi-scale 3x schedule.
_base_ = ['./sparse_rcnn_r50_fpn_3x_coco.py', './_base_/models/swin_t.py']

# The ImageNet-1k weights are read from the local file the base names.
model = dict(
    backbone=dict(_base_.swin_t_backbone, _delete_=True),
    neck=dict(in_channels=_base_.swin_t_out_channels))

# Base AdamW; no weight decay on Swin's position tables and norms.
optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys={
            'absolute_pos_embed': dict(decay_mult=0.),
            'relative_position_bias_table': dict(decay_mult=0.),
            'norm': dict(decay_mult=0.)
        }))
