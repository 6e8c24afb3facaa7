# Table 3, learnable boxes + static head.
_base_ = [
    '../sparse_rcnn_r50_fpn_3x_coco.py',
    './switches/static_1stage.py'
]
model = {{_base_.ablation_model}}
