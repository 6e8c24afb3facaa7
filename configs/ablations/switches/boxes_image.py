# Ablation switch: initial proposal boxes. Every box the whole image (the
# paper's default).
# Row configs merge it into their model with
# `model = {{_base_.ablation_model}}`.
ablation_model = dict(
    rpn_head=dict(init_boxes='image'))
