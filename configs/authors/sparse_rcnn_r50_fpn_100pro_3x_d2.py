# The Sparse R-CNN authors' R-50 100-proposal 3x model (detectron2,
# 42.8 box AP on COCO val in their README) with their test-time arithmetic,
# for checkpoints converted by
# tools/model_converters/sparse_rcnn_d2_to_mmdet.py
# (see docs/authors_checkpoints.md).
_base_ = '../sparse_rcnn_r50_fpn_3x_coco.py'

model = dict(
    # RGB input normalised with torchvision's mean/std, as the authors'.
    data_preprocessor=dict(
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True),
    roi_head=dict(
        bbox_roi_extractor=dict(level_rule='detectron2'),
        bbox_head=dict(decode_style='detectron2')),
    test_cfg=dict(rcnn=dict(clip_to_image=True)))

# Their test images: decoded (EXIF-rotated, RGB) and resized (bilinear,
# shorter side 800, longer <= 1333) with Pillow, as detectron2 does.
test_pipeline = [
    dict(type='LoadImageFromFile', imdecode_backend='pillow'),
    dict(
        type='Resize',
        scale=(1333, 800),
        keep_ratio=True,
        backend='pillow',
        interpolation='bilinear'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
