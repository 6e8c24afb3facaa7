# Table 5, + self-attention.
_base_ = [
    '../../sparse_rcnn_r18_fpn_shapes_demo.py',
    '../switches/static_self_attn.py'
]
model = {{_base_.ablation_model}}
