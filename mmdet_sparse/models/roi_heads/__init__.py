from .bbox_heads import DIIHead, DynamicConv
from .sparse_roi_head import SparseRoIHead

__all__ = ['SparseRoIHead', 'DIIHead', 'DynamicConv']
