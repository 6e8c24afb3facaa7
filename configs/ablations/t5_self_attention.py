# Table 5, + self-attention.
_base_ = [
    '../sparse_rcnn_r50_fpn_3x_coco.py',
    './switches/static_self_attn.py'
]
model = {{_base_.ablation_model}}
