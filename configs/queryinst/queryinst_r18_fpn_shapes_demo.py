# CPU demo of QueryInst: the Sparse R-CNN shapes demo
# (../sparse_rcnn_r18_fpn_shapes_demo.py) plus a dynamic mask head per stage
# at the demo's width (128 channels), trained on the shapes' exact RLE masks.
_base_ = '../sparse_rcnn_r18_fpn_shapes_demo.py'

channels = 128
model = dict(
    type='QueryInst',
    data_preprocessor=dict(pad_mask=True),
    roi_head=dict(
        mask_roi_extractor=dict(
            type='ThreadedRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=14, sampling_ratio=2),
            out_channels=channels,
            featmap_strides=[8, 16, 32]),
        mask_head=dict(
            type='DynamicMaskHead',
            dynamic_conv_cfg=dict(
                type='DynamicConv',
                in_channels=channels,
                feat_channels=32,
                out_channels=channels,
                input_feat_shape=14,
                with_proj=False,
                act_cfg=dict(type='ReLU', inplace=True),
                norm_cfg=dict(type='LN')),
            num_convs=4,
            num_classes={{_base_.model.roi_head.bbox_head.num_classes}},
            roi_feat_size=14,
            in_channels=channels,
            conv_kernel_size=3,
            conv_out_channels=channels,
            class_agnostic=False,
            norm_cfg=dict(type='BN'),
            upsample_cfg=dict(type='deconv', scale_factor=2),
            loss_mask=dict(
                type='DiceLoss',
                loss_weight=8.0,
                use_sigmoid=True,
                activate=False,
                eps=1e-5))),
    train_cfg=dict(rcnn=dict(mask_size=28)),
    test_cfg=dict(rcnn=dict(mask_thr_binary=0.5)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale={{_base_.img_scale}}, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale={{_base_.img_scale}}, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(metric=['bbox', 'segm'])
test_evaluator = val_evaluator
