# Table 8, 6 stages.
_base_ = [
    '../../sparse_rcnn_r18_fpn_shapes_demo.py',
    '../switches/stages_6.py'
]
model = {{_base_.ablation_model}}
