# Ablation switch: The static head in a cascade with feature reuse (each stage
# adds its RoI feature to the previous stage's object feature).
# Row configs merge it into their model with
# `model = {{_base_.ablation_model}}`.
ablation_model = dict(
    roi_head=dict(
        feature_reuse=True,
        bbox_head=dict(
            with_self_attn=False,
            dynamic_conv_cfg=dict(_delete_=True, type='StaticInteraction'))))
