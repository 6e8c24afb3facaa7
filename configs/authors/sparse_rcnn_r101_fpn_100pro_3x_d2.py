# The Sparse R-CNN authors' R-101 100-proposal 3x model (detectron2,
# 44.1 box AP on COCO val in their README) with their test-time arithmetic,
# for checkpoints converted by
# tools/model_converters/sparse_rcnn_d2_to_mmdet.py
# (see docs/authors_checkpoints.md).
_base_ = ['../sparse_rcnn_r101_fpn_3x_coco.py', './_base_/d2_conventions.py']

model = {{_base_.d2_model}}
test_pipeline = {{_base_.d2_test_pipeline}}
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
