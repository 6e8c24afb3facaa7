# Ablation switch: initial proposal boxes. Centre and size drawn from Gaussians
# (seeded).
# Row configs merge it into their model with
# `model = {{_base_.ablation_model}}`.
ablation_model = dict(
    rpn_head=dict(init_boxes='random'))
