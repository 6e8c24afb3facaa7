# Pieces of the 3x COCO training pipelines: the multi-scale resize (shorter
# side 480-800 in steps of 32, longer <= 1333), and the choice (p = 0.5)
# between it and resize -> random crop -> multi-scale resize.
coco_ms_scales = [(480, 1333), (512, 1333), (544, 1333), (576, 1333),
                  (608, 1333), (640, 1333), (672, 1333), (704, 1333),
                  (736, 1333), (768, 1333), (800, 1333)]
coco_ms_resize = dict(
    type='RandomChoiceResize', scales=coco_ms_scales, keep_ratio=True)
coco_ms_or_crop = dict(
    type='RandomChoice',
    transforms=[
        [coco_ms_resize],
        [
            dict(
                type='RandomChoiceResize',
                scales=[(400, 1333), (500, 1333), (600, 1333)],
                keep_ratio=True),
            dict(
                type='RandomCrop',
                crop_type='absolute_range',
                crop_size=(384, 600),
                allow_negative_crop=True),
            coco_ms_resize
        ]
    ])
