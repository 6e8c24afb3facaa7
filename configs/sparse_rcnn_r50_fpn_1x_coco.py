# Sparse R-CNN R50-FPN, 100 proposals, 1x single scale: 37.9 box AP (COCO val).
_base_ = [
    '_base_/models/sparse_rcnn_r50_fpn.py',
    '_base_/datasets/coco_detection.py',
    '_base_/schedules/schedule_1x.py',
    '_base_/default_runtime.py',
]
