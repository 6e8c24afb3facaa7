# Table 10, with positional encoding.
_base_ = [
    '../../sparse_rcnn_r18_fpn_shapes_demo.py',
    '../switches/pos_encoding.py'
]
model = {{_base_.ablation_model}}
