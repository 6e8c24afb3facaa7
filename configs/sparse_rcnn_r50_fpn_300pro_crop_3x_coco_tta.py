# Sparse R-CNN R50-FPN, 300 proposals, 3x + crop, tested with the paper's
# test-time augmentation: `tools/test.py THIS_CONFIG CKPT --tta`.
_base_ = [
    './sparse_rcnn_r50_fpn_300pro_crop_3x_coco.py',
    './_base_/tta/sparse_rcnn_tta.py'
]

tta_model = dict(max_per_img=300)
