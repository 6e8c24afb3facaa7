# Table 6, Center.
_base_ = [
    '../../sparse_rcnn_r18_fpn_shapes_demo.py',
    '../switches/boxes_center.py'
]
model = {{_base_.ablation_model}}
