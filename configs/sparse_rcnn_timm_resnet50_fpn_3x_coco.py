# Sparse R-CNN, timm ResNet-50 backbone (TimmBackbone), 100 proposals,
# multi-scale 3x schedule.
_base_ = './sparse_rcnn_r50_fpn_3x_coco.py'

# Local timm `resnet50` weights; edit the path, or set it to None to train
# from scratch (nothing is downloaded at run time).
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
