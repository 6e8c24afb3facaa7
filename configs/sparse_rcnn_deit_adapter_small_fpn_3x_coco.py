# Sparse R-CNN, ViT-Adapter-S backbone on a DeiT-S ViT, 300 proposals, crop +
# multi-scale 3x schedule: the published ViT-Adapter model (48.1 box AP on
# COCO val, 110M parameters); its released checkpoint loads with strict=True.
_base_ = './sparse_rcnn_r50_fpn_300pro_crop_3x_coco.py'

# Local DeiT-S ImageNet-1k weights ({'model': state_dict}, timm key names);
# edit the path.
# To train from scratch pass `--cfg-options model.backbone.init_cfg=None`;
# setting `pretrained` to None instead stops init_weights with a TypeError.
pretrained = 'checkpoints/deit_small_patch16_224-cd65a155.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='ViTAdapter',
        pretrain_img_size=224,
        patch_size=16,
        embed_dims=384,
        depth=12,
        num_heads=6,
        mlp_ratio=4,
        drop_path_rate=0.2,
        layer_scale=True,
        window_size=14,
        global_attn_indexes=(2, 5, 8, 11),
        interaction_indexes=((0, 2), (3, 5), (6, 8), (9, 11)),
        conv_inplanes=64,
        deform_num_heads=6,
        n_points=4,
        deform_ratio=1.0,
        cffn_ratio=0.25,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(
        in_channels=[384, 384, 384, 384],
        add_extra_convs='on_output',
        num_outs=4))

# The base's pipeline, then a crop to at most 1024 x 1024 (kept when it holds
# no box), as in the published recipe.
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomFlip', prob=0.5),
    {{_base_.coco_ms_or_crop}},
    dict(
        type='RandomCrop',
        crop_type='absolute_range',
        crop_size=(1024, 1024),
        allow_negative_crop=True),
    dict(type='PackDetInputs')
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))

# AdamW lr 1e-4, weight decay 0.05, chosen by parameter-name substrings as in
# the published recipe (longest key first): no decay on names containing
# 'norm' or 'bias', on pos_embed and level_embed; the layer scales (block
# gamma1/gamma2, injector gamma) and the norms whose names lack 'norm' (the
# spatial prior's BN, the LNs inside cls_fcs/reg_fcs) are decayed. The
# learnable proposals get lr x0.25 and decay x0.002 (2.5e-5 and 1e-4). The
# base's grad clipping (max norm 1) is kept.
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05),
    paramwise_cfg=dict(
        custom_keys={
            'level_embed': dict(decay_mult=0.),
            'pos_embed': dict(decay_mult=0.),
            'norm': dict(decay_mult=0.),
            'bias': dict(decay_mult=0.),
            'rpn_head': dict(lr_mult=0.25, decay_mult=0.002)
        }))
