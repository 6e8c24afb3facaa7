"""Datasets and data helpers of ``mmdet_sparse``."""
from .crowd_shapes import generate_crowd_shapes_odgt
from .synthetic_shapes import (SHAPES_CLASSES, SHAPES_DATA_VERSION,
                               ensure_shapes_dataset, generate_shapes_dataset)

__all__ = [
    'SHAPES_CLASSES', 'SHAPES_DATA_VERSION', 'ensure_shapes_dataset',
    'generate_shapes_dataset', 'generate_crowd_shapes_odgt'
]
