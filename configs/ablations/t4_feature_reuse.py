# Table 4, cascade + feature reuse.
_base_ = [
    '../sparse_rcnn_r50_fpn_3x_coco.py',
    './switches/static_cascade.py'
]
model = {{_base_.ablation_model}}
