# Ablation switch: The dynamic head (the paper's model): self-attention, then
# instance interaction by dynamic convolution, feature reuse.
# Row configs merge it into their model with
# `model = {{_base_.ablation_model}}`.
ablation_model = dict(
    roi_head=dict(
        feature_reuse=True,
        bbox_head=dict(
            with_self_attn=True,
            pos_encoding=False,
            dynamic_conv_cfg=dict(type='DynamicConv'))))
