"""Datasets and data helpers of ``mmdet_sparse``."""
from .annotation_report import (AnnotationFileError, AnnotationReport,
                                ClassMatch, DataCheckError)
from .coco import CocoDataset
from .crowd_shapes import generate_crowd_shapes_odgt
from .synthetic_shapes import (SHAPES_CLASSES, SHAPES_DATA_VERSION,
                               ensure_shapes_dataset, generate_shapes_dataset)

__all__ = [
    'AnnotationFileError', 'AnnotationReport', 'ClassMatch',
    'DataCheckError', 'CocoDataset', 'SHAPES_CLASSES', 'SHAPES_DATA_VERSION',
    'ensure_shapes_dataset', 'generate_shapes_dataset',
    'generate_crowd_shapes_odgt'
]
