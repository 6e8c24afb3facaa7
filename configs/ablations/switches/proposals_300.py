# Ablation switch: 300 proposals; every proposal may be kept as a
# detection (the base caps the detections at its own proposal count).
# Row configs merge it into their model with
# `model = {{_base_.ablation_model}}`.
ablation_model = dict(
    rpn_head=dict(num_proposals=300),
    test_cfg=dict(rcnn=dict(max_per_img=300)))
