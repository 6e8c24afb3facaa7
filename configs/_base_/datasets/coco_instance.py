# COCO 2017 instance segmentation: coco_detection.py with the instance masks
# loaded, boxes and masks evaluated.
_base_ = './coco_detection.py'

train_pipeline, test_pipeline = ([
    dict(t, with_mask=True) if t.type == 'LoadAnnotations' else t for t in p
] for p in (_base_.train_pipeline, _base_.test_pipeline))
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
val_evaluator = test_evaluator = dict(metric=['bbox', 'segm'])
