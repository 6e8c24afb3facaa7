from .bbox_heads import DIIHead, DynamicConv
from .roi_extractors import ThreadedRoIExtractor
from .sparse_roi_head import SparseRoIHead

__all__ = ['SparseRoIHead', 'DIIHead', 'DynamicConv', 'ThreadedRoIExtractor']
