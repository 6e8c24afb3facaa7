# QueryInst, Swin-T backbone (MMDetection's SwinTransformer), 100 proposals,
# multi-scale 3x schedule: the backbone swap of
# ../sparse_rcnn_swin_t_fpn_3x_coco.py on QueryInst.
_base_ = [
    './queryinst_r50_fpn_ms-480-800-3x_coco.py', '../_base_/models/swin_t.py'
]

# The ImageNet-1k weights are read from the local file the base names.
model = dict(
    backbone=dict(_base_.swin_t_backbone, _delete_=True),
    neck=dict(in_channels=_base_.swin_t_out_channels))

# QueryInst's optimiser (backbone lr x0.1) without weight decay on Swin's
# position tables; the head's norms ('norm') have none either. (The longest
# matching key wins, so the backbone's norms keep the 'backbone' setting.)
optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys={
            'backbone': dict(lr_mult=0.1),
            'absolute_pos_embed': dict(lr_mult=0.1, decay_mult=0.),
            'relative_position_bias_table': dict(lr_mult=0.1, decay_mult=0.),
            'norm': dict(decay_mult=0.)
        }))
