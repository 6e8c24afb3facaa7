# Ablation switch: 2 stages.
# Row configs merge it into their model with
# `model = {{_base_.ablation_model}}`.
ablation_model = dict(
    roi_head=dict(num_stages=2, stage_loss_weights=[1] * 2))
