# Table 7, 500 proposals.
_base_ = [
    '../sparse_rcnn_r50_fpn_3x_coco.py',
    './switches/proposals_500.py'
]
model = {{_base_.ablation_model}}
