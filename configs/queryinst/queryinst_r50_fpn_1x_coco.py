# QueryInst R50-FPN, 100 proposals, 1x single scale: 42.0 box AP, 37.5 mask
# AP (MMDetection zoo, COCO val). Sparse R-CNN plus one dynamic mask head per
# stage, trained on the proposals that stage matched one-to-one.
_base_ = [
    '../_base_/models/queryinst_r50_fpn.py',
    '../_base_/datasets/coco_instance.py',
    '../_base_/schedules/schedule_1x.py',
    '../_base_/default_runtime.py',
]

# QueryInst's optimiser: AdamW lr 1e-4 (batch 16), backbone lr x0.1, grad
# clip 0.1; warm-up over 1000 iterations, then the base's steps.
optim_wrapper = dict(
    optimizer=dict(lr=1e-4),
    paramwise_cfg=dict(
        custom_keys={'backbone': dict(lr_mult=0.1, decay_mult=1.0)}),
    clip_grad=dict(max_norm=0.1))
param_scheduler = [
    dict(_base_.param_scheduler[0], end=1000), _base_.param_scheduler[1]
]
