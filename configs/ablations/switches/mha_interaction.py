# Ablation switch: Instance interaction by multi-head attention: the proposal
# feature attends to the 7x7 RoI features, in place of the dynamic conv.
# Row configs merge it into their model with
# `model = {{_base_.ablation_model}}`.
ablation_model = dict(
    roi_head=dict(
        bbox_head=dict(
            dynamic_conv_cfg=dict(
                _delete_=True, type='AttentionInteraction', num_heads=8))))
