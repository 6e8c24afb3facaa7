# QueryInst R50-FPN, 100 proposals, 3x with multi-scale training (shorter
# side 480-800): 44.8 box AP, 39.8 mask AP (MMDetection zoo, COCO val).
_base_ = [
    './queryinst_r50_fpn_1x_coco.py', '../_base_/datasets/coco_ms_aug.py'
]

# The base's pipeline with the multi-scale resize.
train_pipeline = [
    _base_.coco_ms_resize if t.type == 'Resize' else t
    for t in _base_.train_pipeline
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))

# 36 epochs, lr x0.1 after epochs 27 and 33; warm-up over 500 iterations.
max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(_base_.param_scheduler[0], end=500),
    dict(_base_.param_scheduler[1], end=max_epochs, milestones=[27, 33])
]
