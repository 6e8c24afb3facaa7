from .bbox_heads import DIIHead, DynamicConv
from .mask_heads import DynamicMaskHead
from .roi_extractors import ThreadedRoIExtractor
from .sparse_roi_head import SparseRoIHead

__all__ = [
    'SparseRoIHead', 'DIIHead', 'DynamicConv', 'DynamicMaskHead',
    'ThreadedRoIExtractor'
]
