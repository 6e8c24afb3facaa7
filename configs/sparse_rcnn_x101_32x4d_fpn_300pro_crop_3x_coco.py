# Sparse R-CNN ResNeXt-101 (32x4d)-FPN, 300 proposals, 3x multi-scale +
# crop: 46.9 box AP on COCO test-dev (paper, Table 2 row ResNeXt-101).
_base_ = './sparse_rcnn_r101_fpn_300pro_crop_3x_coco.py'

model = dict(
    backbone=dict(
        type='ResNeXt',
        depth=101,
        groups=32,
        base_width=4,
        init_cfg=dict(
            type='Pretrained', checkpoint='open-mmlab://resnext101_32x4d')))
