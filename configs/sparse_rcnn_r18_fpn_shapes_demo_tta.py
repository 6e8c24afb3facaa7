# The CPU demo tested with the paper's kind of test-time augmentation,
# scaled to its 256 px images: 6 scales (0.75x-1.5x), each with and without
# horizontal flip; the small scales keep only boxes above 24 / 16 px (sqrt of
# the area in the resized image), the largest only boxes below 96 px; soft-
# vote merge, no NMS. `tools/test.py THIS_CONFIG CKPT --tta`.
_base_ = [
    './sparse_rcnn_r18_fpn_shapes_demo.py', './_base_/tta/sparse_rcnn_tta.py'
]

# (image side, (min, max) of sqrt(box area) kept from that view)
tta_scales = [(192, (24, 10000)), (224, (16, 10000)), (256, (0, 10000)),
              (288, (0, 10000)), (320, (0, 10000)), (384, (0, 96))]
tta_model = dict(
    max_per_img=40,  # the number of proposals
    size_ranges=[
        dict(scale=(side, side), range=size) for side, size in tta_scales
    ])
# The base's views, square sizes instead of (4000, shortest side).
tta_pipeline = [
    _base_.tta_pipeline[0],
    dict(
        _base_.tta_pipeline[1],
        transforms=[[
            dict(type='Resize', scale=(side, side), keep_ratio=True)
            for side, _ in tta_scales
        ], *_base_.tta_pipeline[1].transforms[1:]])
]
