# QueryInst R50-FPN, 100 proposals, 1x single scale: 42.0 box AP, 37.5 mask
# AP (MMDetection zoo, COCO val). Sparse R-CNN plus one dynamic mask head per
# stage, trained on the proposals that stage matched one-to-one.
_base_ = '../sparse_rcnn_r50_fpn_1x_coco.py'

num_stages = 6
model = dict(
    type='QueryInst',
    data_preprocessor=dict(pad_mask=True),
    roi_head=dict(
        mask_roi_extractor=dict(
            type='ThreadedRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=14, sampling_ratio=2),
            out_channels=256,
            featmap_strides=[4, 8, 16, 32]),
        mask_head=dict(
            type='DynamicMaskHead',
            dynamic_conv_cfg=dict(
                type='DynamicConv',
                in_channels=256,
                feat_channels=64,
                out_channels=256,
                input_feat_shape=14,
                with_proj=False,
                act_cfg=dict(type='ReLU', inplace=True),
                norm_cfg=dict(type='LN')),
            num_convs=4,
            num_classes=80,
            roi_feat_size=14,
            in_channels=256,
            conv_kernel_size=3,
            conv_out_channels=256,
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

# Instance masks in the data; evaluation of boxes and masks.
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
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

# QueryInst's optimiser: AdamW lr 1e-4 (batch 16), backbone lr x0.1, grad
# clip 0.1; warm-up over 1000 iterations.
optim_wrapper = dict(
    optimizer=dict(lr=1e-4),
    paramwise_cfg=dict(
        custom_keys={'backbone': dict(lr_mult=0.1, decay_mult=1.0)}),
    clip_grad=dict(max_norm=0.1))
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
        end=1000),
    dict(
        type='MultiStepLR',
        begin=0,
        end=12,
        by_epoch=True,
        milestones=[8, 11],
        gamma=0.1)
]
