# Sparse R-CNN, timm ResNet-50 backbone (TimmBackbone), 100 proposals,
# multi-scale 3x schedule.
_base_ = './sparse_rcnn_r50_fpn_3x_coco.py'

# Local timm `resnet50` weights (nothing is downloaded at run time); edit
# the path.
# To train from scratch pass `--cfg-options model.backbone.init_cfg=None`;
# setting `pretrained` to None instead makes TimmBackbone ask timm for its
# default weights (a download).
pretrained = 'checkpoints/resnet50.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='TimmBackbone',
        model_name='resnet50',
        out_indices=(1, 2, 3, 4),
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[256, 512, 1024, 2048]))
