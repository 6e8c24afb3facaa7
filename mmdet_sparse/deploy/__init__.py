"""Deployment: NMS-free ONNX export of the whole detector and a runtime
(ONNX Runtime or OpenVINO) that needs no config (see
``docs/deployment.md``)."""
from .export import (DEFAULT_OPSET, MAX_OPSET, MIN_OPSET, ExportError,
                     SparseRCNNGraph, build_detector, check_opset,
                     export_onnx, preprocess_meta)
from .parity import compare_detections
from .runtime import (BACKENDS, OnnxDetector, OnnxInferencer, Preprocessed,
                      parse_metadata, preprocess, read_metadata)

__all__ = [
    'DEFAULT_OPSET', 'MAX_OPSET', 'MIN_OPSET', 'ExportError',
    'SparseRCNNGraph', 'build_detector', 'check_opset', 'export_onnx',
    'preprocess_meta', 'compare_detections', 'OnnxDetector',
    'OnnxInferencer', 'Preprocessed', 'preprocess', 'read_metadata',
    'parse_metadata', 'BACKENDS'
]
