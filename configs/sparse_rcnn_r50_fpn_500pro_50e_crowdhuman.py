# Sparse R-CNN R50-FPN on CrowdHuman (paper, Appendix A): 500 proposals,
# 50 epochs (lr x0.1 at epoch 40), multi-scale training with the shortest
# side 480-800 and the longest <= 1500, one class (person, full-body boxes).
# Published on CrowdHuman val: AP 89.2, mMR 48.3, Recall 95.9.
# Data: CrowdHuman's Images/ folder and annotation_{train,val}.odgt under
# data/CrowdHuman/ (MMDetection's layout); `tools/make_demo_data.py --format
# odgt` writes a tiny set of crowded shapes in the same layout.
_base_ = './sparse_rcnn_r50_fpn_1x_coco.py'

num_proposals = 500
model = dict(
    rpn_head=dict(num_proposals=num_proposals),
    roi_head=dict(bbox_head=dict(num_classes=1)),
    # Crowds: keep as many detections as there are proposals.
    test_cfg=dict(rcnn=dict(max_per_img=num_proposals)))

dataset_type = 'CrowdHumanDataset'
data_root = 'data/CrowdHuman/'
backend_args = None
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='RandomChoiceResize',
        scales=[(1500, side) for side in range(480, 801, 32)],
        keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=(1500, 800), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type=dataset_type,
        data_root=data_root,
        ann_file='annotation_train.odgt',
        data_prefix=dict(img='Images/'),
        filter_cfg=dict(filter_empty_gt=False),
        pipeline=train_pipeline,
        backend_args=backend_args))
val_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type=dataset_type,
        data_root=data_root,
        ann_file='annotation_val.odgt',
        data_prefix=dict(img='Images/'),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))
test_dataloader = val_dataloader
val_evaluator = dict(
    _delete_=True,
    type='CrowdHumanMetric',
    ann_file=data_root + 'annotation_val.odgt',
    metric=['AP', 'MR', 'JI'])
test_evaluator = val_evaluator

max_epochs = 50
train_cfg = dict(max_epochs=max_epochs, val_interval=5)
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[40],
        gamma=0.1)
]
default_hooks = dict(checkpoint=dict(interval=5, max_keep_ckpts=3))
