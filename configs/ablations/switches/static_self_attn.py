# Ablation switch: The static head with feature reuse and self-attention over
# the object features (no instance interaction).
# Row configs merge it into their model with
# `model = {{_base_.ablation_model}}`.
ablation_model = dict(
    roi_head=dict(
        bbox_head=dict(
            with_self_attn=True,
            dynamic_conv_cfg=dict(_delete_=True, type='StaticInteraction'))))
