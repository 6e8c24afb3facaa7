# Table 3, + dynamic head.
_base_ = [
    '../../sparse_rcnn_r18_fpn_shapes_demo.py',
    '../switches/dynamic_head.py'
]
model = {{_base_.ablation_model}}
