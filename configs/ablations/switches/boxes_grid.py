# Ablation switch: initial proposal boxes. Boxes on a regular grid (as in
# G-CNN).
# Row configs merge it into their model with
# `model = {{_base_.ablation_model}}`.
ablation_model = dict(
    rpn_head=dict(init_boxes='grid'))
