# The ResNet-101 change to an R-50 model: depth 101 with torchvision's
# ImageNet weights. Configs merge it with `model = {{_base_.r101_model}}`.
r101_model = dict(
    backbone=dict(
        depth=101,
        init_cfg=dict(type='Pretrained',
                      checkpoint='torchvision://resnet101')))
