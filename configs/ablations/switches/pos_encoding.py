# Ablation switch: A sinusoidal encoding of the current boxes added to the
# proposal features at every stage.
# Row configs merge it into their model with
# `model = {{_base_.ablation_model}}`.
ablation_model = dict(
    roi_head=dict(bbox_head=dict(pos_encoding=True)))
