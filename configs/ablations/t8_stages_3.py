# Table 8, 3 stages.
_base_ = [
    '../sparse_rcnn_r50_fpn_3x_coco.py',
    './switches/stages_3.py'
]
model = {{_base_.ablation_model}}
