# QueryInst R101-FPN, 100 proposals, 3x multi-scale: 46.4 box AP, 41.0 mask
# AP (MMDetection zoo, COCO val).
_base_ = [
    './queryinst_r50_fpn_ms-480-800-3x_coco.py',
    '../_base_/models/resnet101.py'
]

model = {{_base_.r101_model}}
