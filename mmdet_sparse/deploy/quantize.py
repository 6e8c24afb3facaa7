"""Post-training static int8 quantization of an exported Sparse R-CNN graph
(ONNX Runtime's ``quantize_static``, QDQ format, per-channel weights).

Calibration images are read from a split of the config's dataset and
preprocessed exactly as at inference (:func:`.runtime.preprocess`, from
the model's own metadata), so the activation ranges are those the runtime
will see.

What is quantized: ``Conv`` and the ``Gemm``/``MatMul`` nodes with a
constant weight (the backbone, the neck and the heads' static linear
layers). What stays in float32: the products of two activations (the
dynamic convolution's generated-weight ``MatMul``s, attention scores and
values), RoIAlign, the box decoding, softmax/sigmoid, layer norms and the
top-k; see ``docs/deployment.md``.

The export metadata is carried over with a ``quantization`` entry (also a
plain ``quantization: int8`` property), so every tool that runs an
exported file runs the quantized one unchanged.
"""
import json
import os
import os.path as osp
import tempfile
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np

from .runtime import INPUT_NAMES, META_KEY

#: Plain metadata property marking the precision of a quantized file.
QUANT_KEY = 'quantization'
#: Operator types quantized; others stay in float32.
QUANTIZED_OPS = ('Conv', 'Gemm', 'MatMul')
#: Operators that only a quantized graph holds.
_QUANT_OPS = {'QuantizeLinear', 'DequantizeLinear', 'DynamicQuantizeLinear',
              'QLinearConv', 'QLinearMatMul', 'ConvInteger',
              'MatMulInteger'}
SPLITS = ('train', 'val', 'test')


class QuantizeError(ValueError):
    """A model, config or option that cannot be quantized."""


def check_float_model(model, path: str) -> Dict:
    """The export metadata of ``model`` (an ``onnx.ModelProto``).

    Raises:
        QuantizeError: the file has no export metadata, or is quantized.
    """
    props = {p.key: p.value for p in model.metadata_props}
    if META_KEY not in props:
        raise QuantizeError(
            f'{path} has no {META_KEY!r} metadata: it was not written by '
            'tools/deployment/export_onnx.py; quantize an exported file')
    meta = json.loads(props[META_KEY])
    ops = {n.op_type for n in model.graph.node} & _QUANT_OPS
    if meta.get(QUANT_KEY) or QUANT_KEY in props or ops:
        what = (f"metadata {QUANT_KEY}={props.get(QUANT_KEY, 'int8')}"
                if not ops else f"operators {', '.join(sorted(ops))}")
        raise QuantizeError(
            f'{path} is already quantized ({what}): quantize the float32 '
            'export instead')
    return meta


# ----------------------------------------------------------- calibration ---
def calibration_images(cfg, split: str, num_images: int) -> List[str]:
    """``num_images`` image paths spread evenly over a split of ``cfg``.

    Args:
        cfg (Config): Config with ``{split}_dataloader.dataset``.
        split (str): ``'train'``, ``'val'`` or ``'test'``.
        num_images (int): How many.

    Raises:
        QuantizeError: the split's dataset, annotation file or image
            folder is missing (naming the path and the config field), or
            it has fewer than ``num_images`` images.
    """
    from mmengine.registry import DefaultScope

    import mmdet_sparse  # noqa: F401
    from mmdet_sparse.registry import DATASETS
    if split not in SPLITS:
        raise QuantizeError(f'unknown split {split!r}: choose one of '
                            f'{SPLITS}')
    if num_images < 1:
        raise QuantizeError(f'--num-images must be >= 1, got {num_images}')
    field = f'{split}_dataloader.dataset'
    dataset_cfg = (cfg.get(f'{split}_dataloader') or {}).get('dataset')
    if not dataset_cfg:
        raise QuantizeError(f'the config has no {field}')
    root = dataset_cfg.get('data_root') or ''
    paths = [('ann_file', dataset_cfg.get('ann_file'))]
    paths += [(f'data_prefix.{k}', v) for k, v in
              (dataset_cfg.get('data_prefix') or {}).items() if k == 'img']
    for key, rel in paths:
        if not rel:
            continue
        path = rel if osp.isabs(rel) else osp.join(root, rel)
        if not osp.exists(path):
            raise QuantizeError(
                f'calibration data not found: {path} ({field}.{key}='
                f'{rel!r}, {field}.data_root={root!r}); point '
                f'{field}.data_root at the dataset (e.g. --cfg-options '
                f'{field}.data_root=data/coco/)')
    with DefaultScope.overwrite_default_scope(
            cfg.get('default_scope', 'mmdet_sparse')):
        dataset = DATASETS.build(dataset_cfg)
    if len(dataset) < num_images:
        raise QuantizeError(
            f'the {split} split ({field}) has {len(dataset)} images, fewer '
            f'than the {num_images} asked for calibration: pass '
            f'--num-images {len(dataset)} or fewer, or another --split')
    index = np.linspace(0, len(dataset) - 1, num_images).round()
    return [dataset.get_data_info(int(i))['img_path'] for i in index]


class InputsReader:
    """Calibration inputs for ONNX Runtime (its ``CalibrationDataReader``
    protocol: ``get_next``, None after the last, and ``rewind``).

    Args:
        inputs (Sequence[dict]): Graph inputs, ``{'image': ...,
            'image_size': ...}`` each.
    """

    def __init__(self, inputs: Sequence[Dict[str, np.ndarray]] = ()) -> None:
        self.inputs = list(inputs)
        self.rewind()

    def _batches(self) -> Iterator[Dict[str, np.ndarray]]:
        return iter(self.inputs)

    def __len__(self) -> int:
        return len(self.inputs)

    def get_next(self) -> Optional[Dict[str, np.ndarray]]:
        """The next inputs, None after the last."""
        return next(self._iter, None)

    def rewind(self) -> None:
        """Start again from the first inputs."""
        self._iter = self._batches()


class ImageCalibrationReader(InputsReader):
    """Calibration images read and preprocessed one at a time, as
    :class:`.runtime.OnnxDetector` does.

    Args:
        paths (Sequence[str]): Image files.
        meta (dict): The model's export metadata.
    """

    def __init__(self, paths: Sequence[str], meta: Dict) -> None:
        self.paths = list(paths)
        self.meta = meta
        super().__init__()

    def _batches(self) -> Iterator[Dict[str, np.ndarray]]:
        from .runtime import preprocess, read_image
        fixed = None if self.meta['dynamic'] else tuple(
            self.meta['img_size'])
        for path in self.paths:
            pre = preprocess(read_image(path), self.meta['preprocess'],
                             fixed)
            yield {INPUT_NAMES[0]: pre.image, INPUT_NAMES[1]: pre.image_size}

    def __len__(self) -> int:
        return len(self.paths)


# ---------------------------------------------------------- quantization ---
def float_nodes(model) -> List[str]:
    """Names of the ``MatMul``/``Gemm`` nodes of ``model`` whose second
    input is not a 2-D weight: products of two activations (the dynamic
    convolution's generated weights, attention) and the batched products
    with per-proposal constants of the first stage (folded from the learned
    proposal features). They stay in float32."""
    graph = model.graph
    rank = {i.name: len(i.dims) for i in graph.initializer}
    rank.update({n.output[0]: len(a.t.dims) for n in graph.node
                 if n.op_type == 'Constant' for a in n.attribute
                 if a.name == 'value'})
    return [n.name for n in graph.node if n.op_type in ('MatMul', 'Gemm')
            and rank.get(n.input[1]) != 2]


def _name_nodes(model) -> None:
    """Give every unnamed node a unique name (``nodes_to_exclude`` and the
    quantizer identify nodes by name)."""
    names = {n.name for n in model.graph.node if n.name}
    for i, node in enumerate(model.graph.node):
        if not node.name:
            name = f'{node.op_type}_{i}'
            while name in names:
                name += '_'
            node.name = name
            names.add(name)


def quantize_model(model_path: str, out: str, reader,
                   calibration: Optional[Dict] = None,
                   per_channel: bool = True) -> Dict:
    """Quantize ``model_path`` to int8 and write it to ``out``.

    Args:
        model_path (str): A float32 ``.onnx`` file of the exporter.
        out (str): The int8 file: written only when everything succeeded
            (a temporary file in the same folder, then renamed).
        reader (CalibrationDataReader): Calibration inputs.
        calibration (dict, optional): Facts about the calibration data
            stored in the metadata (e.g. split, number of images).
        per_channel (bool): One weight scale per output channel.

    Returns:
        dict: The metadata of the quantized file.

    Raises:
        QuantizeError: see :func:`check_float_model`.
    """
    import onnx
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from mmdet_sparse.engine.checkpoint_hook import commit, temp_path
    if not osp.isfile(model_path):
        raise FileNotFoundError(f'ONNX model not found: {model_path}')
    model = onnx.load(model_path)
    meta = check_float_model(model, model_path)
    props = {p.key: p.value for p in model.metadata_props}
    out_dir = osp.dirname(osp.abspath(out))
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix='.quantize.', dir=out_dir) as tmp:
        prepared = osp.join(tmp, 'prepared.onnx')
        # shape inference and ORT's basic graph optimisations (batch norms
        # folded into the convolutions) before the ranges are collected
        quant_pre_process(model_path, prepared, skip_symbolic_shape=True)
        model = onnx.load(prepared)
        _name_nodes(model)
        excluded = float_nodes(model)
        onnx.save(model, prepared)
        quantized = osp.join(tmp, 'int8.onnx')
        quantize_static(
            prepared, quantized, reader, quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(QUANTIZED_OPS), per_channel=per_channel,
            # u8 activations, s8 weights: ONNX Runtime's advice for x86
            # CPUs with VNNI (no 7-bit reduced range needed)
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded,
            calibrate_method=CalibrationMethod.MinMax,
            # the heads' linear layers return float32 (integer products
            # with a float output): their outputs feed layer norms,
            # residual sums, the box deltas and the class logits
            extra_options=dict(MatMulConstBOnly=True,
                               OpTypesToExcludeOutputQuantization=[
                                   'Gemm', 'MatMul']))
        model = onnx.load(quantized)
    ops = [n.op_type for n in model.graph.node]
    meta[QUANT_KEY] = dict(
        dtype='int8', format='QDQ', per_channel=per_channel,
        activations='uint8', weights='int8',
        quantized_ops=list(QUANTIZED_OPS), float_nodes=len(excluded),
        calibration=dict(calibration or {}, method='MinMax'),
        num_qdq=ops.count('QuantizeLinear'))
    props.update({META_KEY: json.dumps(meta), QUANT_KEY: 'int8'})
    del model.metadata_props[:]
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    tmp_file = temp_path(out)
    try:
        onnx.save(model, tmp_file)
        commit(tmp_file, out)
    finally:
        if osp.exists(tmp_file):
            os.remove(tmp_file)
    return meta


def quantize_onnx(config, model_path: str, out: str, split: str = 'train',
                  num_images: int = 200) -> Dict:
    """Quantize an exported file, calibrated on ``num_images`` of the
    ``split`` split of ``config``.

    Args:
        config (str | Config): Config naming the calibration dataset.
        model_path (str): The float32 ``.onnx`` file.
        out (str): The int8 ``.onnx`` file.
        split (str): ``'train'``, ``'val'`` or ``'test'``.
        num_images (int): Calibration images.

    Returns:
        dict: The metadata of the quantized file.
    """
    import onnx
    from mmengine.config import Config
    cfg = config if isinstance(config, Config) else Config.fromfile(config)
    if not osp.isfile(model_path):
        raise FileNotFoundError(f'ONNX model not found: {model_path}')
    # refuse a wrong file before the (possibly large) dataset is read
    meta = check_float_model(onnx.load(model_path, load_external_data=False),
                             model_path)
    paths = calibration_images(cfg, split, num_images)
    calibration = dict(split=split, num_images=len(paths),
                       config=osp.basename(cfg.filename or '') or None)
    return quantize_model(model_path, out,
                          ImageCalibrationReader(paths, meta), calibration)
