# Table 6, Image.
_base_ = [
    '../../sparse_rcnn_r18_fpn_shapes_demo.py',
    '../switches/boxes_image.py'
]
model = {{_base_.ablation_model}}
