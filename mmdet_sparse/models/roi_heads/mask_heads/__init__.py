from .dynamic_mask_head import DynamicMaskHead
from .mask_ops import (GroundTruthMasks, mask_targets, paste_masks,
                       select_label_channel)

__all__ = [
    'DynamicMaskHead', 'GroundTruthMasks', 'mask_targets', 'paste_masks',
    'select_label_channel'
]
