# Sparse R-CNN ResNeXt-101 (32x4d)-FPN with modulated deformable convolution
# (mmcv DCNv2) in the 3x3 convs of stages 2-4 (conv3_x-conv5_x), 300
# proposals, 3x multi-scale + crop: 48.9 box AP on COCO test-dev (paper,
# Table 2 row ResNeXt-101-DCN). `--tta` with the _tta config: 51.5.
_base_ = './sparse_rcnn_x101_32x4d_fpn_300pro_crop_3x_coco.py'

model = dict(
    backbone=dict(
        dcn=dict(type='DCNv2', deform_groups=1, fallback_on_stride=False),
        stage_with_dcn=(False, True, True, True)))
