# Table 6, Random.
_base_ = [
    '../sparse_rcnn_r50_fpn_3x_coco.py',
    './switches/boxes_random.py'
]
model = {{_base_.ablation_model}}
