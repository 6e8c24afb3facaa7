# Table 6, Center.
_base_ = [
    '../sparse_rcnn_r50_fpn_3x_coco.py',
    './switches/boxes_center.py'
]
model = {{_base_.ablation_model}}
