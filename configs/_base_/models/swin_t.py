# Swin-T (MMDetection's SwinTransformer; ImageNet-1k release weights are
# converted on load) as a detection backbone, drop path 0.2: the backbone,
# without its weights, and the widths of the four levels it gives the FPN.
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
    convert_weights=True)
swin_t_out_channels = [96, 192, 384, 768]
