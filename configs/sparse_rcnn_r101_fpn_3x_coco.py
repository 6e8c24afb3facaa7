# Sparse R-CNN R101-FPN, 100 proposals, 3x multi-scale: 44.2 box AP.
_base_ = './sparse_rcnn_r50_fpn_3x_coco.py'

model = dict(
    backbone=dict(
        depth=101,
        init_cfg=dict(
            type='Pretrained', checkpoint='torchvision://resnet101')))
