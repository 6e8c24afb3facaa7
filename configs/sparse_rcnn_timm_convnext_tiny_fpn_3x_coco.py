# Sparse R-CNN, timm ConvNeXt-T backbone (TimmBackbone), 100 proposals,
# multi-scale 3x schedule.
_base_ = './sparse_rcnn_r50_fpn_3x_coco.py'

# Local timm `convnext_tiny` weights; edit the path, or set it to None to
# train from scratch (nothing is downloaded at run time).
pretrained = 'checkpoints/convnext_tiny.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='TimmBackbone',
        model_name='convnext_tiny',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.4,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]))
