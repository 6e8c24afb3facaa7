# Ablation switch: 3 stages.
# Row configs merge it into their model with
# `model = {{_base_.ablation_model}}`.
ablation_model = dict(
    roi_head=dict(num_stages=3, stage_loss_weights=[1] * 3))
