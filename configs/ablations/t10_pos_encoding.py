# Table 10, with positional encoding.
_base_ = [
    '../sparse_rcnn_r50_fpn_3x_coco.py',
    './switches/pos_encoding.py'
]
model = {{_base_.ablation_model}}
