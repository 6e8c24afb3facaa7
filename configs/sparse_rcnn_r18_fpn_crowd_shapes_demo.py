# CPU demo of the CrowdHuman pipeline (CrowdHumanDataset, CrowdHumanMetric:
# AP, mMR, JI) on crowded shapes of one class, 256 px images:
#   python tools/make_demo_data.py --format odgt --out-dir data/crowd_shapes
#   python tools/train.py configs/sparse_rcnn_r18_fpn_crowd_shapes_demo.py
# The shapes demo's small model with 100 proposals; same schedule.
_base_ = './sparse_rcnn_r18_fpn_shapes_demo.py'

data_root = 'data/crowd_shapes/'
num_proposals = 100
model = dict(
    rpn_head=dict(num_proposals=num_proposals),
    roi_head=dict(bbox_head=dict(num_classes=1)),
    test_cfg=dict(rcnn=dict(max_per_img=num_proposals)))

dataset_type = 'CrowdHumanDataset'
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type=dataset_type,
        data_root=data_root,
        ann_file='annotation_train.odgt',
        data_prefix=dict(img='Images/'),
        pipeline={{_base_.train_pipeline}}))
val_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type=dataset_type,
        data_root=data_root,
        ann_file='annotation_val.odgt',
        data_prefix=dict(img='Images/'),
        test_mode=True,
        pipeline={{_base_.test_pipeline}}))
test_dataloader = val_dataloader
val_evaluator = dict(
    _delete_=True,
    type='CrowdHumanMetric',
    ann_file=data_root + 'annotation_val.odgt',
    metric=['AP', 'MR', 'JI'],
    num_ji_process=2)
test_evaluator = val_evaluator
default_hooks = dict(checkpoint=dict(save_best='crowd_human/mAP'))
