# Swin-T (MMDetection's SwinTransformer) as a detection backbone, drop path
# 0.2, with its ImageNet-1k weights: the local copy of the official release
# file (converted on load; docs/backbones.md says where to get it), and the
# widths of the four levels it gives the FPN. A config swaps it in with
# `model = dict(backbone=dict(_base_.swin_t_backbone, _delete_=True),
# neck=dict(in_channels=_base_.swin_t_out_channels))`.
# To train from scratch pass `--cfg-options model.backbone.init_cfg=None`;
# setting the checkpoint to None instead stops init_weights with a TypeError.
pretrained = 'checkpoints/swin_tiny_patch4_window7_224.pth'
swin_t_backbone = dict(
    type='SwinTransformer',
    embed_dims=96,
    depths=[2, 2, 6, 2],
    num_heads=[3, 6, 12, 24],
    window_size=7,
    mlp_ratio=4,
    qkv_bias=True,
    drop_path_rate=0.2,
    patch_norm=True,
    out_indices=(0, 1, 2, 3),
    convert_weights=True,
    init_cfg=dict(type='Pretrained', checkpoint=pretrained))
swin_t_out_channels = [96, 192, 384, 768]
