# Sparse R-CNN, ViT-Adapter-S backbone on a DeiT-S ViT, 300 proposals, crop +
# multi-scale 3x schedule.
_base_ = './sparse_rcnn_r50_fpn_300pro_crop_3x_coco.py'

# Local DeiT-S ImageNet-1k weights ({'model': state_dict}, timm key names);
# edit the path, or set it to None to train from scratch.
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

# AdamW lr 1e-4, weight decay 0.05, none on norms, biases, embeddings and the
# injectors' layer scales (gamma); the
# learnable proposals keep the base's lr 2.5e-5 and weight decay 1e-4. The
# base's grad clipping (max norm 1) is kept.
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05),
    paramwise_cfg=dict(
        norm_decay_mult=0.,
        bias_decay_mult=0.,
        custom_keys={
            'pos_embed': dict(decay_mult=0.),
            'level_embed': dict(decay_mult=0.),
            'injector.gamma': dict(decay_mult=0.),
            'rpn_head': dict(lr_mult=0.25, decay_mult=0.002)
        }))
