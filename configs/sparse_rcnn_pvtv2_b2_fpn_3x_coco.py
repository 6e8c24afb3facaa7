# Sparse R-CNN, PVTv2-b2 backbone (MMDetection's PyramidVisionTransformerV2),
# 100 proposals, multi-scale 3x schedule.
_base_ = './sparse_rcnn_r50_fpn_3x_coco.py'

# Local ImageNet-1k PVTv2-b2 weights (official release file, converted on
# load); edit the path.
# To train from scratch pass `--cfg-options model.backbone.init_cfg=None`;
# setting `pretrained` to None instead stops init_weights with a TypeError.
pretrained = 'checkpoints/pvt_v2_b2.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='PyramidVisionTransformerV2',
        embed_dims=64,
        num_layers=[3, 4, 6, 3],
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[64, 128, 320, 512]))
# The base optimiser (AdamW, lr 2.5e-5, weight decay 1e-4) is kept.
