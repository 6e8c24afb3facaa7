# Table 6 (not in the paper), Dataset k-means.
_base_ = [
    '../sparse_rcnn_r50_fpn_3x_coco.py',
    './switches/boxes_dataset.py'
]
model = {{_base_.ablation_model}}
default_hooks = {{_base_.ablation_default_hooks}}
