"""Models of ``mmdet_sparse``: Sparse R-CNN heads and extra backbones."""
from . import backbones, dense_heads, roi_heads  # noqa: F401
from . import test_time_augs  # noqa: F401
from .dense_heads import EmbeddingRPNHead
from .roi_heads import DIIHead, DynamicConv, DynamicMaskHead, SparseRoIHead
from .test_time_augs import SparseRCNNTTAModel

__all__ = [
    'EmbeddingRPNHead', 'SparseRoIHead', 'DIIHead', 'DynamicConv',
    'DynamicMaskHead', 'SparseRCNNTTAModel'
]
