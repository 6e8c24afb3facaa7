"""Deployment: NMS-free ONNX export of the whole detector, its int8
quantization (:mod:`.quantize`, imported on use) and a runtime (ONNX
Runtime or OpenVINO, float32 or bf16) that needs no config (see
``docs/deployment.md``).

The runtime and parity names are imported here directly (numpy, OpenCV
and the backend only); the export names on first use, because the
exporter imports torch.
"""
import importlib

from .parity import compare_detections
from .runtime import (BACKENDS, PRECISIONS, OnnxDetector, OnnxInferencer,
                      Preprocessed, check_precision, cpu_has_bf16,
                      parse_metadata, preprocess, read_metadata)

_LAZY = {
    'DEFAULT_OPSET': 'export', 'MAX_OPSET': 'export', 'MIN_OPSET': 'export',
    'ExportError': 'export', 'SparseRCNNGraph': 'export',
    'build_detector': 'export', 'check_opset': 'export',
    'export_onnx': 'export', 'preprocess_meta': 'export'
}

__all__ = [
    'DEFAULT_OPSET', 'MAX_OPSET', 'MIN_OPSET', 'ExportError',
    'SparseRCNNGraph', 'build_detector', 'check_opset', 'export_onnx',
    'preprocess_meta', 'compare_detections', 'OnnxDetector',
    'OnnxInferencer', 'Preprocessed', 'preprocess', 'read_metadata',
    'parse_metadata', 'BACKENDS', 'PRECISIONS', 'check_precision',
    'cpu_has_bf16'
]


def __getattr__(name: str):
    """The export names, imported on first use."""
    if name in _LAZY:
        value = getattr(importlib.import_module(f'.{_LAZY[name]}', __name__),
                        name)
        globals()[name] = value
        return value
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
