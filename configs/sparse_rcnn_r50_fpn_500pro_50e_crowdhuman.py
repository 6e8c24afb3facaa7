# Sparse R-CNN R50-FPN on CrowdHuman (paper, Appendix A): 500 proposals,
# 50 epochs (lr x0.1 at epoch 40), multi-scale training with the shortest
# side 480-800 and the longest <= 1500, one class (person, full-body boxes).
# Published on CrowdHuman val: AP 89.2, mMR 48.3, Recall 95.9.
# Data: CrowdHuman's Images/ folder and annotation_{train,val}.odgt under
# data/CrowdHuman/ (MMDetection's layout); `tools/make_demo_data.py --format
# odgt` writes a tiny set of crowded shapes in the same layout.
_base_ = [
    './sparse_rcnn_r50_fpn_1x_coco.py', './_base_/datasets/crowdhuman.py'
]

num_proposals = 500
model = dict(
    rpn_head=dict(num_proposals=num_proposals),
    roi_head=dict(bbox_head=dict(num_classes=1)),
    # Crowds: keep as many detections as there are proposals.
    test_cfg=dict(rcnn=dict(max_per_img=num_proposals)))

# COCO's pipelines at CrowdHuman's sizes: shorter side 480-800 in steps of
# 32 (training) or 800 (test), longer side <= 1500.
train_pipeline = [
    dict(
        type='RandomChoiceResize',
        scales=[(1500, side) for side in range(480, 801, 32)],
        keep_ratio=True) if t.type == 'Resize' else t
    for t in _base_.train_pipeline
]
test_pipeline = [
    dict(t, scale=(1500, 800)) if t.type == 'Resize' else t
    for t in _base_.test_pipeline
]
# CrowdHuman's datasets and metric in place of COCO's; images with no box
# are kept.
dataset_type = 'CrowdHumanDataset'
data_root = 'data/CrowdHuman/'
_data = dict(
    type=dataset_type, data_root=data_root, backend_args=_base_.backend_args)
train_dataloader = dict(
    dataset=dict(
        _base_.crowdhuman_train,
        **_data,
        _delete_=True,
        filter_cfg=dict(filter_empty_gt=False),
        pipeline=train_pipeline))
val_dataloader = test_dataloader = dict(
    dataset=dict(
        _base_.crowdhuman_val, **_data, _delete_=True,
        pipeline=test_pipeline))
val_evaluator = test_evaluator = dict(
    _base_.crowdhuman_metric,
    _delete_=True,
    ann_file=data_root + 'annotation_val.odgt')

max_epochs = 50
train_cfg = dict(max_epochs=max_epochs, val_interval=5)
# The base's warm-up; lr x0.1 after epoch 40.
param_scheduler = [
    _base_.param_scheduler[0],
    dict(_base_.param_scheduler[1], end=max_epochs, milestones=[40])
]
default_hooks = dict(checkpoint=dict(interval=5, max_keep_ckpts=3))
