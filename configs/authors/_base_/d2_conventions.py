# What the Sparse R-CNN authors' detectron2 models compute differently from
# MMDetection's at test time, for the configs of this folder (each adds
# `d2_model` to its zoo config's model and uses `d2_test_pipeline`).
d2_model = dict(
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
d2_test_pipeline = [
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
