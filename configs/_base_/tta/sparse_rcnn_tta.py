# Test-time augmentation of the Sparse R-CNN paper (51.5 AP on COCO
# test-dev with ResNeXt-101-DCN): 13 shortest sides (longest <= 4000), each
# with and without horizontal flip; per scale only boxes whose size (in that
# view's resized image) is in a range are kept, small objects from the large
# scales and large objects from the small ones; the views are merged by
# soft vote (IoU 0.65), no NMS. Run with `tools/test.py CONFIG CKPT --tta`.
tta_max_size = 4000
# (shortest side, (min, max) of sqrt(box area) kept from that view)
tta_scales = [(400, (96, 10000)), (500, (96, 10000)), (600, (64, 10000)),
              (640, (64, 10000)), (700, (64, 10000)), (900, (0, 10000)),
              (1000, (0, 10000)), (1100, (0, 256)), (1200, (0, 256)),
              (1300, (0, 192)), (1400, (0, 192)), (1800, (0, 96)),
              (800, (0, 10000))]

tta_model = dict(
    type='SparseRCNNTTAModel',
    iou_thr=0.65,
    soft_score_thr=0.05,
    max_per_img=100,  # the model's number of proposals
    size_ranges=[
        dict(scale=(tta_max_size, side), range=size)
        for side, size in tta_scales
    ])
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(
        type='TestTimeAug',
        transforms=[
            [
                dict(type='Resize', scale=(tta_max_size, side),
                     keep_ratio=True) for side, _ in tta_scales
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
