# Sparse R-CNN, timm ConvNeXt-T backbone (TimmBackbone), 100 proposals,
# multi-scale 3x schedule.
_base_ = './sparse_rcnn_r50_fpn_3x_coco.py'

# Local timm `convnext_tiny` weights (nothing is downloaded at run time);
# edit the path.
# To train from scratch pass `--cfg-options model.backbone.init_cfg=None`;
# setting `pretrained` to None instead makes TimmBackbone ask timm for its
# default weights (a download).
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
