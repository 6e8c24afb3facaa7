"""The model a benchmark measures: built from a config with random weights,
its random input, its parts (backbone+neck, heads), its parameter counts,
and its exported ONNX graph as a runner."""
import os.path as osp
from typing import Callable, Dict, List, Optional, Tuple

import torch


def backbone_label(backbone: dict) -> str:
    """Short backbone name from its config, e.g. ``ResNet-50``."""
    name = backbone['type']
    if name == 'TimmBackbone':
        return f"timm {backbone['model_name']}"
    if 'depth' in backbone and name.startswith('ResN'):
        return f"{name}-{backbone['depth']}"
    return name


def build_model(config: str, device: str = 'cpu') -> Tuple[torch.nn.Module,
                                                            object]:
    """Eval-mode model of ``config`` with random weights, and its config.

    A ``Pretrained`` backbone ``init_cfg`` is dropped and timm backbones get
    ``pretrained=False`` so that nothing is downloaded or read;
    ``init_weights()`` is not called.
    """
    import mmdet_sparse  # noqa: F401  (registers the modules)
    from mmengine.config import Config
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import DefaultScope

    from mmdet_sparse.registry import MODELS

    cfg = Config.fromfile(config)
    backbone = cfg.model.backbone
    init_cfg = backbone.get('init_cfg')
    if isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained':
        backbone.init_cfg = None
    if backbone.type == 'TimmBackbone':
        backbone.pretrained = False
        backbone.checkpoint_path = None
    elif backbone.get('pretrained') is not None:
        backbone.pretrained = None
    with DefaultScope.overwrite_default_scope(
            cfg.get('default_scope', 'mmdet_sparse')):
        model = revert_sync_batchnorm(MODELS.build(cfg.model))
    # no parameter needs a gradient (also keeps the FLOP counter's module
    # tracker from hooking the learned proposals, returned as they are)
    return model.to(device).eval().requires_grad_(False), cfg


def make_inputs(img_size: Tuple[int, int],
                device: str = 'cpu') -> Tuple[torch.Tensor, list]:
    """Random normalised ``(1, 3, H, W)`` input and its ``DetDataSample``.

    Raises:
        ValueError: if ``H`` or ``W`` is not a multiple of 32.
    """
    from mmdet.structures import DetDataSample
    h, w = img_size
    if h % 32 or w % 32:
        raise ValueError(f'--img-size must be multiples of 32, got {h}x{w}')
    sample = DetDataSample(metainfo=dict(
        img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
        scale_factor=(1.0, 1.0), batch_input_shape=(h, w)))
    gen = torch.Generator().manual_seed(0)
    return torch.randn(1, 3, h, w, generator=gen).to(device), [sample]


def run_heads(model: torch.nn.Module, feats, samples: list) -> List:
    """The detector's ``predict`` after ``extract_feat``: learned proposals
    (RPN head) and the iterative RoI heads."""
    proposals = model.rpn_head.predict(feats, samples, rescale=False)
    return model.roi_head.predict(feats, proposals, samples, rescale=True)


def onnx_runner(model: torch.nn.Module, config: str, inputs: torch.Tensor,
                threads: Optional[int], backend: str = 'onnxruntime',
                precision: str = 'fp32') -> Callable[[], object]:
    """``run()`` of ``model`` exported to a fixed-size ONNX graph at the
    size of ``inputs``, in ``backend`` (``'onnxruntime'`` or
    ``'openvino'``) and ``precision`` (``'fp32'``, ``'bf16'`` or
    ``'int8'``: quantized, calibrated on ``inputs``)."""
    import tempfile

    import numpy as np

    from mmdet_sparse.deploy import OnnxDetector, export_onnx
    h, w = inputs.shape[-2:]
    with tempfile.TemporaryDirectory() as tmp:
        path = osp.join(tmp, 'model.onnx')
        export_onnx(config, None, path, img_size=(h, w), model=model)
        image = inputs.cpu().numpy()
        size = np.array([h, w], np.int64)
        if precision == 'int8':
            from mmdet_sparse.deploy.quantize import (InputsReader,
                                                      quantize_model)
            quantize_model(path, path, InputsReader(
                [dict(image=image, image_size=size)]))
        detector = OnnxDetector(
            path, threads, backend=backend,
            precision='fp32' if precision == 'int8' else precision)
    return lambda: detector.run(image, size)


def count_params(model: torch.nn.Module) -> Dict[str, int]:
    """Parameters: total, backbone, neck, heads (RPN + RoI heads)."""
    def num(module: Optional[torch.nn.Module]) -> int:
        return sum(p.numel() for p in module.parameters()) if module else 0
    heads = num(getattr(model, 'rpn_head', None)) + \
        num(getattr(model, 'roi_head', None))
    return dict(total=num(model), backbone=num(model.backbone),
                neck=num(getattr(model, 'neck', None)), heads=heads)
