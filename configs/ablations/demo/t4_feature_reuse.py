# Table 4, cascade + feature reuse.
_base_ = [
    '../../sparse_rcnn_r18_fpn_shapes_demo.py',
    '../switches/static_cascade.py'
]
model = {{_base_.ablation_model}}
