# ResNeXt-101-DCN tested with the paper's test-time augmentation
# (`tools/test.py THIS_CONFIG CKPT --tta`): 51.5 box AP on COCO test-dev.
_base_ = [
    './sparse_rcnn_x101_32x4d_dcn_fpn_300pro_crop_3x_coco.py',
    './_base_/tta/sparse_rcnn_tta.py'
]

tta_model = dict(max_per_img=300)
