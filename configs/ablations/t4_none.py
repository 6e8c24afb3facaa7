# Table 4, no iteration (static head).
_base_ = [
    '../sparse_rcnn_r50_fpn_3x_coco.py',
    './switches/static_1stage.py'
]
model = {{_base_.ablation_model}}
