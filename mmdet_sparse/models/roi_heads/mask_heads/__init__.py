from .dynamic_mask_head import DynamicMaskHead
from .mask_ops import mask_targets, paste_masks, select_label_channel

__all__ = [
    'DynamicMaskHead', 'mask_targets', 'paste_masks', 'select_label_channel'
]
