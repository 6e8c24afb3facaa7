# Table 6, Grid.
_base_ = [
    '../../sparse_rcnn_r18_fpn_shapes_demo.py',
    '../switches/boxes_grid.py'
]
model = {{_base_.ablation_model}}
