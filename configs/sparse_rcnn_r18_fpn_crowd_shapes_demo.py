# CPU demo of the CrowdHuman pipeline (CrowdHumanDataset, CrowdHumanMetric:
# AP, mMR, JI) on crowded shapes of one class, 256 px images:
#   python tools/make_demo_data.py --format odgt --out-dir data/crowd_shapes
#   python tools/train.py configs/sparse_rcnn_r18_fpn_crowd_shapes_demo.py
# The shapes demo's small model with 100 proposals; same schedule.
_base_ = [
    './sparse_rcnn_r18_fpn_shapes_demo.py', './_base_/datasets/crowdhuman.py'
]

data_root = 'data/crowd_shapes/'
num_proposals = 100
model = dict(
    rpn_head=dict(num_proposals=num_proposals),
    roi_head=dict(bbox_head=dict(num_classes=1)),
    test_cfg=dict(rcnn=dict(max_per_img=num_proposals)))

# CrowdHuman's datasets and metric in place of the shapes', with the base's
# pipelines.
dataset_type = 'CrowdHumanDataset'
_data = dict(type=dataset_type, data_root=data_root)
train_dataloader = dict(
    dataset=dict(
        _base_.crowdhuman_train, **_data, _delete_=True,
        pipeline=_base_.train_pipeline))
val_dataloader = test_dataloader = dict(
    dataset=dict(
        _base_.crowdhuman_val, **_data, _delete_=True,
        pipeline=_base_.test_pipeline))
val_evaluator = test_evaluator = dict(
    _base_.crowdhuman_metric,
    _delete_=True,
    ann_file=data_root + 'annotation_val.odgt',
    num_ji_process=2)
default_hooks = dict(checkpoint=dict(save_best='crowd_human/mAP'))
