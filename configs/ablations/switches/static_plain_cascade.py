# Ablation switch: The static head in a plain cascade: every stage re-pools the
# refined boxes and starts from the initial proposal features.
# Row configs merge it into their model with
# `model = {{_base_.ablation_model}}`.
ablation_model = dict(
    roi_head=dict(
        feature_reuse=False,
        bbox_head=dict(
            with_self_attn=False,
            dynamic_conv_cfg=dict(_delete_=True, type='StaticInteraction'))))
