# Table 7, 100 proposals.
_base_ = [
    '../../sparse_rcnn_r18_fpn_shapes_demo.py',
    '../switches/proposals_100.py'
]
model = {{_base_.ablation_model}}
