"""Deployment: NMS-free ONNX export of the whole detector, its int8
quantization (:mod:`.quantize`, imported on use) and a runtime (ONNX
Runtime or OpenVINO, float32 or bf16) that needs no config (see
``docs/deployment.md``)."""
from .export import (DEFAULT_OPSET, MAX_OPSET, MIN_OPSET, ExportError,
                     SparseRCNNGraph, build_detector, check_opset,
                     export_onnx, preprocess_meta)
from .parity import compare_detections
from .runtime import (BACKENDS, PRECISIONS, OnnxDetector, OnnxInferencer,
                      Preprocessed, check_precision, cpu_has_bf16,
                      parse_metadata, preprocess, read_metadata)

__all__ = [
    'DEFAULT_OPSET', 'MAX_OPSET', 'MIN_OPSET', 'ExportError',
    'SparseRCNNGraph', 'build_detector', 'check_opset', 'export_onnx',
    'preprocess_meta', 'compare_detections', 'OnnxDetector',
    'OnnxInferencer', 'Preprocessed', 'preprocess', 'read_metadata',
    'parse_metadata', 'BACKENDS', 'PRECISIONS', 'check_precision',
    'cpu_has_bf16'
]
