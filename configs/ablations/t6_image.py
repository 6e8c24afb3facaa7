# Table 6, Image.
_base_ = [
    '../sparse_rcnn_r50_fpn_3x_coco.py',
    './switches/boxes_image.py'
]
model = {{_base_.ablation_model}}
