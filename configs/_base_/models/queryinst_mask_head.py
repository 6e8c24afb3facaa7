# What QueryInst adds to a Sparse R-CNN model, at R50-FPN widths (256
# channels, strides 4-32, 80 classes): a dynamic mask head per stage, 28 px
# mask targets, masks binarised at 0.5. Configs merge it into their model
# with `model = {{_base_.queryinst_model}}`, or override the widths.
queryinst_model = dict(
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
