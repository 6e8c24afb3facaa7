# Table 3, learnable boxes + static head.
_base_ = [
    '../../sparse_rcnn_r18_fpn_shapes_demo.py',
    '../switches/static_1stage.py'
]
model = {{_base_.ablation_model}}
