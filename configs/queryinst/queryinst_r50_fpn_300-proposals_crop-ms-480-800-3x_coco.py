# QueryInst R50-FPN, 300 proposals, 3x multi-scale + random crop: 47.5 box
# AP, 41.7 mask AP (MMDetection zoo, COCO val).
_base_ = './queryinst_r50_fpn_ms-480-800-3x_coco.py'

num_proposals = 300
model = dict(
    rpn_head=dict(num_proposals=num_proposals),
    test_cfg=dict(rcnn=dict(max_per_img=num_proposals)))

# Load (image, boxes, masks) and flip, then with p = 0.5 either the
# multi-scale resize, or resize -> crop -> resize.
train_pipeline = [
    *_base_.train_pipeline[:2],
    dict(type='RandomFlip', prob=0.5),
    _base_.coco_ms_or_crop,
    dict(type='PackDetInputs')
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
