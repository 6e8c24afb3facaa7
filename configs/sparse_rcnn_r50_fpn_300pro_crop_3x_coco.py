# Sparse R-CNN R50-FPN, 300 proposals, 3x multi-scale + random crop:
# 45.0 box AP (COCO val).
_base_ = [
    './sparse_rcnn_r50_fpn_3x_coco.py', './_base_/datasets/coco_ms_aug.py'
]

num_proposals = 300
model = dict(
    rpn_head=dict(num_proposals=num_proposals),
    test_cfg=dict(rcnn=dict(max_per_img=num_proposals)))

# With p = 0.5 either the multi-scale resize, or resize -> crop -> resize.
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomFlip', prob=0.5),
    {{_base_.coco_ms_or_crop}},
    dict(type='PackDetInputs')
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
