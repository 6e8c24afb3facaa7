# QueryInst, ResNet-50 + FPN: the Sparse R-CNN model with QueryInst's mask
# head per stage (queryinst_mask_head.py).
_base_ = ['./sparse_rcnn_r50_fpn.py', './queryinst_mask_head.py']

model = {{_base_.queryinst_model}}
