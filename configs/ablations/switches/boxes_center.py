# Ablation switch: initial proposal boxes. All boxes at the image centre, 0.1
# of its width and height.
# Row configs merge it into their model with
# `model = {{_base_.ablation_model}}`.
ablation_model = dict(
    rpn_head=dict(init_boxes='center'))
