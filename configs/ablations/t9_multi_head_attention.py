# Table 9, multi-head attention.
_base_ = [
    '../sparse_rcnn_r50_fpn_3x_coco.py',
    './switches/mha_interaction.py'
]
model = {{_base_.ablation_model}}
