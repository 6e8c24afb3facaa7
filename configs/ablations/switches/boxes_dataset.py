# Ablation switch: initial proposal boxes. k-means centres of the training
# boxes, computed by DatasetProposalInitHook before the first iteration.
# Row configs merge it into their model with
# `model = {{_base_.ablation_model}}`.
ablation_model = dict(
    rpn_head=dict(init_boxes='dataset'))
ablation_default_hooks = dict(
    proposal_init=dict(type='DatasetProposalInitHook'))
