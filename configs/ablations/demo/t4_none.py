# Table 4, no iteration (static head).
_base_ = [
    '../../sparse_rcnn_r18_fpn_shapes_demo.py',
    '../switches/static_1stage.py'
]
model = {{_base_.ablation_model}}
