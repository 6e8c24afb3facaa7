# Sparse R-CNN R101-FPN, 300 proposals, 3x multi-scale + crop: 46.2 box AP.
_base_ = './sparse_rcnn_r50_fpn_300pro_crop_3x_coco.py'

model = dict(
    backbone=dict(
        depth=101,
        init_cfg=dict(
            type='Pretrained', checkpoint='torchvision://resnet101')))
