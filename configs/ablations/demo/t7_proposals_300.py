# Table 7, 300 proposals.
_base_ = [
    '../../sparse_rcnn_r18_fpn_shapes_demo.py',
    '../switches/proposals_300.py'
]
model = {{_base_.ablation_model}}
