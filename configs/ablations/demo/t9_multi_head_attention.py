# Table 9, multi-head attention.
_base_ = [
    '../../sparse_rcnn_r18_fpn_shapes_demo.py',
    '../switches/mha_interaction.py'
]
model = {{_base_.ablation_model}}
