# CPU demo of QueryInst: the Sparse R-CNN shapes demo
# (../sparse_rcnn_r18_fpn_shapes_demo.py) plus a dynamic mask head per stage
# at the demo's width (128 channels), trained on the shapes' exact RLE masks.
_base_ = [
    '../sparse_rcnn_r18_fpn_shapes_demo.py',
    '../_base_/models/queryinst_mask_head.py'
]

# QueryInst's additions at the widths of the demo's box head.
_mask = _base_.queryinst_model.roi_head
model = dict(
    _base_.queryinst_model,
    roi_head=dict(
        mask_roi_extractor=dict(
            _mask.mask_roi_extractor,
            out_channels=_base_.channels,
            featmap_strides=[8, 16, 32]),
        mask_head=dict(
            _mask.mask_head,
            dynamic_conv_cfg=dict(
                _mask.mask_head.dynamic_conv_cfg,
                in_channels=_base_.channels,
                feat_channels=32,
                out_channels=_base_.channels),
            num_classes=_base_.model.roi_head.bbox_head.num_classes,
            in_channels=_base_.channels,
            conv_out_channels=_base_.channels)))

# The base's pipelines with the instance masks loaded; boxes and masks
# evaluated.
train_pipeline, test_pipeline = ([
    dict(t, with_mask=True) if t.type == 'LoadAnnotations' else t for t in p
] for p in (_base_.train_pipeline, _base_.test_pipeline))
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
val_evaluator = test_evaluator = dict(metric=['bbox', 'segm'])
