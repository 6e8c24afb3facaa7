# QueryInst R101-FPN, 300 proposals, 3x multi-scale + crop: 49.0 box AP,
# 42.9 mask AP (MMDetection zoo, COCO val).
_base_ = [
    './queryinst_r50_fpn_300-proposals_crop-ms-480-800-3x_coco.py',
    '../_base_/models/resnet101.py'
]

model = {{_base_.r101_model}}
