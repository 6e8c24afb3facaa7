# Ablation switch: 300 proposals.
# Row configs merge it into their model with
# `model = {{_base_.ablation_model}}`.
ablation_model = dict(
    rpn_head=dict(num_proposals=300))
