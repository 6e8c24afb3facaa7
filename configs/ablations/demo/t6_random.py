# Table 6, Random.
_base_ = [
    '../../sparse_rcnn_r18_fpn_shapes_demo.py',
    '../switches/boxes_random.py'
]
model = {{_base_.ablation_model}}
