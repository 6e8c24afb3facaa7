# Ablation switch: The static 2-fc head of Faster R-CNN (no self-attention, no
# dynamic parameters), one stage.
# Row configs merge it into their model with
# `model = {{_base_.ablation_model}}`.
ablation_model = dict(
    roi_head=dict(
        num_stages=1,
        stage_loss_weights=[1],
        bbox_head=dict(
            with_self_attn=False,
            dynamic_conv_cfg=dict(_delete_=True, type='StaticInteraction'))))
