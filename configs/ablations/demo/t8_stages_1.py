# Table 8, 1 stage.
_base_ = [
    '../../sparse_rcnn_r18_fpn_shapes_demo.py',
    '../switches/stages_1.py'
]
model = {{_base_.ablation_model}}
