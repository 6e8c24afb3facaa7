"""Run an exported Sparse R-CNN ONNX file with ONNX Runtime or OpenVINO.

:class:`OnnxDetector` reads the preprocessing facts from the model's
metadata (plain JSON, see :mod:`.export`), so it needs no config:

1. resize as the config's test ``Resize`` (the size rule of mmcv's
   ``imrescale`` / ``imresize``, which the pipeline calls, and the same
   ``cv2.resize``),
2. channel swap, ``(x - mean) / std`` in float32, zero padding to the
   divisor (as ``DetDataPreprocessor``),
3. the graph,
4. boxes divided by the resize's ``(w_scale, h_scale)``: the original
   image's frame.

Running a model needs numpy, OpenCV and the backend only: this module
imports neither torch, mmcv nor mmdet (``requirements/deploy.txt``; mmcv
only for a ``pillow`` resize backend, :class:`OnnxInferencer` needs mmdet
for drawing).

Loading a model runs no code from it: the session gets the CPU provider
(or the ones asked for) and no custom-op library, OpenVINO gets no
extension, and the metadata is parsed with ``json``.

Backends (:data:`BACKENDS`): ``onnxruntime`` (CPU provider by default) and
``openvino`` (its CPU plugin reading the same ``.onnx`` file, with float32
inference forced: on CPUs with bfloat16 units it would otherwise compute in
bfloat16, which moved a trained demo model's scores by 1.2e-3 to 1.4e-3).

Precisions (:data:`PRECISIONS`): ``fp32`` (default) and ``bf16``, OpenVINO
only (``INFERENCE_PRECISION_HINT=bf16``), refused on a CPU without
bfloat16 instructions (:func:`cpu_has_bf16`). An int8 file of
:mod:`.quantize` runs with either backend like a float32 one: its integer
parts are in the graph (QDQ), ``precision`` applies to the rest.
"""
import json
import os.path as osp
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

# The graph's interface, as :mod:`.export` writes it (that module imports
# torch; tests check that both agree).
META_KEY = 'mmdet_sparse'
INPUT_NAMES = ('image', 'image_size')
OUTPUT_NAMES = ('boxes', 'scores', 'labels')
_CV2_INTERPOLATION = dict(nearest=0, bilinear=1, bicubic=2, area=3,
                          lanczos=4)


@dataclass
class Preprocessed:
    """One image ready for the graph.

    Attributes:
        image (np.ndarray): ``(1, 3, H, W)`` float32, padded.
        image_size (np.ndarray): ``(2,)`` int64 ``(h, w)`` before padding.
        scale_factor (tuple): ``(w_scale, h_scale)`` of the resize.
        ori_shape (tuple): ``(h, w)`` of the original image.
    """
    image: np.ndarray
    image_size: np.ndarray
    scale_factor: Tuple[float, float]
    ori_shape: Tuple[int, int]


def read_image(path: str) -> np.ndarray:
    """A BGR ``uint8`` image as mmcv's ``imread`` (cv2 backend, colour)
    reads it.

    Raises:
        ValueError: the file cannot be decoded, naming it.
    """
    import cv2
    try:
        data = np.fromfile(path, np.uint8)
    except OSError as exc:
        raise ValueError(f'Cannot read image: {path} ({exc})') from exc
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None or img.size == 0:
        raise ValueError(f'Cannot decode image: {path}')
    return img


def _resize(img: np.ndarray, size: Tuple[int, int], resize: Dict
            ) -> np.ndarray:
    """``img`` resized to ``size`` ``(w, h)`` as mmcv's ``imresize`` does
    (cv2; mmcv itself for the ``pillow`` backend)."""
    if resize.get('backend', 'cv2') != 'cv2':
        import mmcv
        return mmcv.imresize(img, size, backend=resize['backend'],
                             interpolation=resize.get('interpolation',
                                                      'bilinear'))
    import cv2
    return cv2.resize(img, size, interpolation=_CV2_INTERPOLATION[
        resize.get('interpolation', 'bilinear')])


def preprocess(img_bgr: np.ndarray, meta: Dict,
               pad_to: Optional[Tuple[int, int]] = None) -> Preprocessed:
    """The config's test-time preprocessing of one BGR ``uint8`` image.

    Args:
        img_bgr (np.ndarray): ``(h, w, 3)`` image, BGR (as mmcv reads it).
        meta (dict): ``preprocess`` metadata of the model.
        pad_to (tuple, optional): ``(H, W)`` to pad to (a fixed-size
            model); else the next multiple of the divisor.

    Returns:
        Preprocessed: the graph inputs and the resize facts.
    """
    if img_bgr.ndim != 3 or img_bgr.shape[2] != 3:
        raise ValueError(f'expected an (h, w, 3) image, got shape '
                         f'{img_bgr.shape}')
    ori_h, ori_w = img_bgr.shape[:2]
    img, w_scale, h_scale = img_bgr, 1.0, 1.0
    resize = meta.get('resize')
    if resize:
        if resize.get('scale') is not None:
            scale = tuple(resize['scale'])
        else:
            factor = resize['scale_factor']
            fw, fh = (factor, factor) if isinstance(factor, (int, float)) \
                else factor
            scale = (int(ori_w * float(fw) + 0.5),
                     int(ori_h * float(fh) + 0.5))
        if resize.get('keep_ratio'):  # mmcv's imrescale: fit in the scale
            ratio = min(max(scale) / max(ori_h, ori_w),
                        min(scale) / min(ori_h, ori_w))
            scale = (int(ori_w * ratio + 0.5), int(ori_h * ratio + 0.5))
        img = _resize(img, scale, resize)
        new_h, new_w = img.shape[:2]
        w_scale, h_scale = new_w / ori_w, new_h / ori_h
    h, w = img.shape[:2]
    x = img.astype(np.float32)
    if meta.get('bgr_to_rgb'):
        x = x[..., ::-1]
    mean = np.asarray(meta['mean'], np.float32)
    std = np.asarray(meta['std'], np.float32)
    x = (x - mean) / std
    div = max(int(meta.get('pad_size_divisor', 1)), 1)
    if pad_to is None:
        pad_to = (-(-h // div) * div, -(-w // div) * div)
    if h > pad_to[0] or w > pad_to[1]:
        raise ValueError(
            f'the resized image ({h}x{w}) does not fit the model\'s fixed '
            f'input {pad_to[0]}x{pad_to[1]}; export with --dynamic or a '
            'larger --img-size')
    out = np.full((1, 3, *pad_to), meta.get('pad_value', 0.0), np.float32)
    out[0, :, :h, :w] = x.transpose(2, 0, 1)
    return Preprocessed(out, np.array([h, w], np.int64),
                        (float(w_scale), float(h_scale)), (ori_h, ori_w))


BACKENDS = ('onnxruntime', 'openvino')
PRECISIONS = ('fp32', 'bf16')

#: Backbones whose exported graphs OpenVINO 2026.4.1 computes wrongly
#: (docs/deployment.md): refused by ``backend='openvino'``.
OPENVINO_REFUSED_BACKBONES = ('ViTAdapter', )


def check_backend(meta: Dict, backend: str, path: str) -> None:
    """Refuse a (model, backend) pair known to give wrong detections.

    Args:
        meta (dict): The export metadata (``backbone`` is the backbone's
            class name; files exported before it was recorded pass).
        backend (str): The backend asked for.
        path (str): The model file, for the message.

    Raises:
        ValueError: OpenVINO with a backbone of
            :data:`OPENVINO_REFUSED_BACKBONES`.
    """
    backbone = meta.get('backbone')
    if backend == 'openvino' and backbone in OPENVINO_REFUSED_BACKBONES:
        raise ValueError(
            f'{path}: OpenVINO gives wrong detections for {backbone} '
            'graphs (its boxes and scores disagree with ONNX Runtime and '
            'PyTorch); use --backend onnxruntime for this model')


def cpu_has_bf16(core=None) -> bool:
    """Whether this CPU computes in bfloat16: ``BF16`` among OpenVINO's
    ``OPTIMIZATION_CAPABILITIES`` of the CPU (given ``core``, an
    ``openvino.Core``), else the ``avx512_bf16`` / ``amx_bf16`` flags of
    ``/proc/cpuinfo``."""
    try:
        if core is None:
            import openvino as ov
            core = ov.Core()
        return 'BF16' in core.get_property('CPU', 'OPTIMIZATION_CAPABILITIES')
    except Exception:  # no OpenVINO: the kernel's CPU flags
        try:
            with open('/proc/cpuinfo') as f:
                flags = f.read().split()
        except OSError:
            return False
        return 'avx512_bf16' in flags or 'amx_bf16' in flags


def check_precision(precision: str, backend: str, core=None) -> None:
    """Refuse a precision the backend or the CPU cannot run.

    Raises:
        ValueError: an unknown precision, ``bf16`` with ONNX Runtime (its
            CPU provider has no bfloat16 mode) or on a CPU without
            bfloat16 instructions.
    """
    if precision not in PRECISIONS:
        raise ValueError(f'unknown precision {precision!r}: choose one of '
                         f'{PRECISIONS}')
    if precision != 'bf16':
        return
    if backend != 'openvino':
        raise ValueError(
            f"precision 'bf16' is not available with {backend}: ONNX "
            "Runtime's CPU provider has no bfloat16 mode; use --backend "
            'openvino --precision bf16 (or an int8 file from '
            'tools/deployment/quantize.py)')
    if not cpu_has_bf16(core):
        raise ValueError(
            "precision 'bf16' needs bfloat16 instructions (AVX512_BF16 or "
            "AMX-BF16), which this CPU lacks (OpenVINO's CPU "
            "OPTIMIZATION_CAPABILITIES has no BF16); use --precision fp32")


def parse_metadata(props: Dict[str, str], path: str = 'the ONNX model'
                   ) -> Dict:
    """The export metadata among a model's string properties.

    Raises:
        ValueError: the model was not written by this package's exporter.
    """
    if META_KEY not in props:
        raise ValueError(f'{path} has no {META_KEY!r} metadata: export it '
                         'with tools/deployment/export_onnx.py')
    return json.loads(props[META_KEY])


def read_metadata(session) -> Dict:
    """The export metadata of an ONNX Runtime session (see
    :func:`parse_metadata`)."""
    return parse_metadata(session.get_modelmeta().custom_metadata_map)


class _OrtGraph:
    """The graph in an ONNX Runtime session."""

    def __init__(self, path: str, num_threads: Optional[int],
                 providers: Sequence[str]) -> None:
        import onnxruntime as ort
        options = ort.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = int(num_threads)
            options.inter_op_num_threads = 1
        options.graph_optimization_level = \
            ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(path, options,
                                            providers=list(providers))
        self.meta = parse_metadata(
            self.session.get_modelmeta().custom_metadata_map, path)
        self.input_names = tuple(i.name for i in self.session.get_inputs())

    def __call__(self, image: np.ndarray,
                 image_size: np.ndarray) -> Tuple[np.ndarray, ...]:
        return tuple(self.session.run(
            list(OUTPUT_NAMES), {INPUT_NAMES[0]: image,
                                 INPUT_NAMES[1]: image_size}))


class _OpenVINOGraph:
    """The graph compiled by OpenVINO's CPU plugin, in float32 (or
    ``precision='bf16'``); a model refused by :func:`check_backend` is not
    compiled."""

    def __init__(self, path: str, num_threads: Optional[int],
                 precision: str = 'fp32') -> None:
        import openvino as ov
        core = ov.Core()
        check_precision(precision, 'openvino', core)
        model = core.read_model(path)
        # ONNX metadata_props arrive as rt_info['framework'][key].
        key = ['framework', META_KEY]
        props = {META_KEY: model.get_rt_info(key).astype(str)
                 } if model.has_rt_info(key) else {}
        self.meta = parse_metadata(props, path)
        check_backend(self.meta, 'openvino', path)
        self.input_names = tuple(i.get_any_name() for i in model.inputs)
        config = {'INFERENCE_PRECISION_HINT': dict(fp32='f32',
                                                   bf16='bf16')[precision],
                  'PERFORMANCE_HINT': 'LATENCY'}
        if num_threads:
            config['INFERENCE_NUM_THREADS'] = int(num_threads)
        compiled = core.compile_model(model, 'CPU', config)
        names = [o.get_any_name() for o in compiled.outputs]
        self.outputs = [compiled.outputs[names.index(name)]
                        for name in OUTPUT_NAMES]
        self.request = compiled.create_infer_request()

    def __call__(self, image: np.ndarray,
                 image_size: np.ndarray) -> Tuple[np.ndarray, ...]:
        out = self.request.infer({INPUT_NAMES[0]: image,
                                  INPUT_NAMES[1]: image_size})
        # Copies: the request reuses its output buffers on the next call.
        return tuple(np.array(out[port]) for port in self.outputs)


class OnnxDetector:
    """A Sparse R-CNN ONNX file run with ONNX Runtime or OpenVINO.

    Args:
        path (str): The ``.onnx`` file.
        num_threads (int, optional): Intra-op threads (the backend's
            default when None).
        providers (Sequence[str]): ONNX Runtime execution providers.
        backend (str): ``'onnxruntime'`` or ``'openvino'``.
        precision (str): ``'fp32'`` or ``'bf16'`` (OpenVINO on a CPU with
            bfloat16 instructions; see :func:`check_precision`).

    Attributes:
        quantization (str | None): ``'int8'`` for a file of
            :mod:`.quantize`, else None.
    """

    def __init__(self, path: str, num_threads: Optional[int] = None,
                 providers: Sequence[str] = ('CPUExecutionProvider', ),
                 backend: str = 'onnxruntime',
                 precision: str = 'fp32') -> None:
        if backend not in BACKENDS:
            raise ValueError(f'unknown backend {backend!r}: choose one of '
                             f'{BACKENDS}')
        if backend != 'openvino':
            check_precision(precision, backend)
        if not osp.isfile(path):
            raise FileNotFoundError(f'ONNX model not found: {path}')
        self.path = path
        self.backend = backend
        self.precision = precision
        if backend == 'openvino':
            self.graph = _OpenVINOGraph(path, num_threads, precision)
        else:
            self.graph = _OrtGraph(path, num_threads, providers)
        self.meta = self.graph.meta
        self.quantization = (self.meta.get('quantization') or {}).get(
            'dtype')
        names = self.graph.input_names
        if names != INPUT_NAMES:
            raise ValueError(f'{path}: graph inputs {names}, expected '
                             f'{INPUT_NAMES}')
        self.classes: List[str] = list(self.meta['classes'])
        self.fixed_size = None if self.meta['dynamic'] else tuple(
            self.meta['img_size'])

    def preprocess(self, img_bgr: np.ndarray) -> Preprocessed:
        """Graph inputs of one BGR image (see :func:`preprocess`)."""
        return preprocess(img_bgr, self.meta['preprocess'], self.fixed_size)

    def run(self, image: np.ndarray,
            image_size: np.ndarray) -> Tuple[np.ndarray, ...]:
        """The raw graph: boxes ``(k, 4)`` in the network-input frame,
        scores ``(k,)``, labels ``(k,)``."""
        return self.graph(image, image_size)

    def __call__(self, img: Union[str, np.ndarray]) -> Dict[str, Any]:
        """Detections of one image (a path or a BGR array), in the
        original image's pixels.

        Returns:
            dict: ``bboxes`` ``(k, 4)``, ``scores`` ``(k,)``, ``labels``
            ``(k,)``, ``ori_shape``, ``img_shape``, ``scale_factor``.
        """
        if isinstance(img, str):
            img = read_image(img)
        pre = self.preprocess(img)
        boxes, scores, labels = self.run(pre.image, pre.image_size)
        w_scale, h_scale = pre.scale_factor
        boxes = boxes / np.array([w_scale, h_scale, w_scale, h_scale],
                                 np.float32)
        return dict(bboxes=boxes, scores=scores, labels=labels,
                    ori_shape=pre.ori_shape,
                    img_shape=tuple(int(v) for v in pre.image_size),
                    scale_factor=pre.scale_factor)


class OnnxInferencer:
    """What ``mmdet_sparse.apis.run_inference`` needs from an inferencer
    (``model.dataset_meta``, ``visualizer`` and a call returning
    ``DetDataSample`` predictions), backed by an :class:`OnnxDetector`.

    Args:
        path (str): The ``.onnx`` file.
        num_threads (int, optional): Intra-op threads.
        backend (str): ``'onnxruntime'`` or ``'openvino'``.
        precision (str): ``'fp32'`` or ``'bf16'`` (OpenVINO).
    """

    class _Model:
        def __init__(self, classes: Sequence[str]) -> None:
            self.dataset_meta = dict(classes=tuple(classes))

    def __init__(self, path: str, num_threads: Optional[int] = None,
                 backend: str = 'onnxruntime',
                 precision: str = 'fp32') -> None:
        from mmdet.visualization import DetLocalVisualizer
        self.detector = OnnxDetector(path, num_threads, backend=backend,
                                     precision=precision)
        self.model = self._Model(self.detector.classes)
        self.visualizer = DetLocalVisualizer(
            name=f'onnx_visualizer_{id(self)}')
        self.visualizer.dataset_meta = self.model.dataset_meta

    def __call__(self, img: np.ndarray, return_datasamples: bool = True,
                 **kwargs) -> Dict[str, list]:
        """``{'predictions': [DetDataSample]}`` for one BGR image."""
        import torch
        from mmdet.structures import DetDataSample
        from mmengine.structures import InstanceData
        out = self.detector(img)
        sample = DetDataSample(metainfo=dict(
            ori_shape=out['ori_shape'], img_shape=out['img_shape'],
            scale_factor=out['scale_factor']))
        sample.pred_instances = InstanceData(
            bboxes=torch.from_numpy(out['bboxes']),
            scores=torch.from_numpy(out['scores']),
            labels=torch.from_numpy(out['labels']))
        return dict(predictions=[sample])
