# Table 8, 1 stage.
_base_ = [
    '../sparse_rcnn_r50_fpn_3x_coco.py',
    './switches/stages_1.py'
]
model = {{_base_.ablation_model}}
