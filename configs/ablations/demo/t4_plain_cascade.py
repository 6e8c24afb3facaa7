# Table 4, plain cascade.
_base_ = [
    '../../sparse_rcnn_r18_fpn_shapes_demo.py',
    '../switches/static_plain_cascade.py'
]
model = {{_base_.ablation_model}}
