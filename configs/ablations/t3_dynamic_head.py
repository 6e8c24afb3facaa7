# Table 3, + dynamic head.
_base_ = [
    '../sparse_rcnn_r50_fpn_3x_coco.py',
    './switches/dynamic_head.py'
]
model = {{_base_.ablation_model}}
