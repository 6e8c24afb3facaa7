# The CPU demo tested with the paper's kind of test-time augmentation,
# scaled to its 256 px images: 6 scales (0.75x-1.5x), each with and without
# horizontal flip; the small scales keep only boxes above 24 / 16 px (sqrt of
# the area in the resized image), the largest only boxes below 96 px; soft-
# vote merge, no NMS. `tools/test.py THIS_CONFIG CKPT --tta`.
_base_ = './sparse_rcnn_r18_fpn_shapes_demo.py'

# (image side, (min, max) of sqrt(box area) kept from that view)
tta_scales = [(192, (24, 10000)), (224, (16, 10000)), (256, (0, 10000)),
              (288, (0, 10000)), (320, (0, 10000)), (384, (0, 96))]
tta_model = dict(
    type='SparseRCNNTTAModel',
    iou_thr=0.65,
    soft_score_thr=0.05,
    max_per_img=40,  # the number of proposals
    size_ranges=[
        dict(scale=(side, side), range=size) for side, size in tta_scales
    ])
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='TestTimeAug',
        transforms=[
            [
                dict(type='Resize', scale=(side, side), keep_ratio=True)
                for side, _ in tta_scales
            ],
            [dict(type='RandomFlip', prob=0.),
             dict(type='RandomFlip', prob=1.)],
            [
                dict(
                    type='PackDetInputs',
                    meta_keys=('img_id', 'img_path', 'ori_shape',
                               'img_shape', 'scale_factor', 'scale', 'flip',
                               'flip_direction'))
            ]
        ])
]
