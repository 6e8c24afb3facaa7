# Table 6, Grid.
_base_ = [
    '../sparse_rcnn_r50_fpn_3x_coco.py',
    './switches/boxes_grid.py'
]
model = {{_base_.ablation_model}}
