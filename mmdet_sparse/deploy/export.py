"""Export a whole Sparse R-CNN detector to one ONNX graph.

The graph (batch 1, standard ``ai.onnx`` operators only) runs the backbone,
the neck, the learned proposals (scaled by the *unpadded* image size, a
graph input), every stage (RoIAlign as ONNX ``RoiAlign``) and the top
``max_per_img`` of the last stage's scores. There is no NMS.

Graph inputs:

* ``image``: ``(1, 3, H, W)`` float32, preprocessed (resized, normalised,
  channel order swapped) and padded to a multiple of ``pad_size_divisor``.
* ``image_size``: ``(2,)`` int64, ``(h, w)`` of the image before padding.

Graph outputs, in the network-input frame (the resized, unpadded image):
``boxes`` ``(k, 4)`` float32 ``x1, y1, x2, y2``, ``scores`` ``(k,)``
float32 and ``labels`` ``(k,)`` int64, sorted by score.

The preprocessing facts (mean, std, channel order, divisor, test resize,
class names) go into the model's metadata as JSON, so the runtime
(:mod:`.runtime`) needs no config.
"""
import json
import os
import os.path as osp
import tempfile
from contextlib import contextmanager
from copy import deepcopy
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from mmengine.config import Config
from torch import Tensor, nn

# The graph's interface (names, metadata key) is the runtime's.
from .runtime import INPUT_NAMES, META_KEY, OUTPUT_NAMES

# ONNX RoiAlign has ``coordinate_transformation_mode`` ('half_pixel') from
# opset 16; ONNX Runtime's CPU provider has no RoiAlign kernel at 22-23.
MIN_OPSET, MAX_OPSET, DEFAULT_OPSET = 16, 21, 18
# Test-pipeline transforms the runtime reproduces; others are refused.
_IGNORED_TRANSFORMS = ('LoadAnnotations', 'PackDetInputs')


class ExportError(RuntimeError):
    """A model, config or option that cannot be exported."""


def check_opset(opset: int) -> int:
    """``opset`` if ONNX Runtime can run the exported graph, else raise.

    Raises:
        ExportError: naming the opset and the supported range.
    """
    if not MIN_OPSET <= opset <= MAX_OPSET:
        why = ('RoiAlign has no half_pixel coordinate mode before opset 16'
               if opset < MIN_OPSET else
               "ONNX Runtime's CPU provider has no RoiAlign kernel at "
               'opsets 22-23')
        raise ExportError(
            f'opset {opset} is not supported: {why}; use --opset '
            f'{MIN_OPSET}..{MAX_OPSET} (default {DEFAULT_OPSET})')
    return opset


# ------------------------------------------------------------ the graph ---
def _unexportable_modules(model: nn.Module) -> List[Tuple[str, str]]:
    """``(name, class)`` of modules that torch.export cannot capture:
    compiled mmcv ops other than those with an exportable path
    (``RoIAlign`` inside an RoI extractor, and
    ``MultiScaleDeformableAttention``, whose CPU path is pure PyTorch)."""
    from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor
    handled = set()
    for name, module in model.named_modules():
        if isinstance(module, SingleRoIExtractor):
            handled.update(f'{name}.roi_layers.{i}'
                           for i in range(len(module.roi_layers)))
    bad = []
    for name, module in model.named_modules():
        cls = type(module)
        if not cls.__module__.startswith('mmcv.ops') or name in handled:
            continue
        if cls.__name__ == 'MultiScaleDeformableAttention':
            continue
        bad.append((name, f'{cls.__module__}.{cls.__name__}'))
    return bad


class SparseRCNNGraph(nn.Module):
    """The detector's test-time forward as one exportable function.

    Args:
        detector (nn.Module): A ``SparseRCNN`` with this package's
            ``EmbeddingRPNHead`` and ``SparseRoIHead``, in eval mode.
    """

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor

        from mmdet_sparse.models.dense_heads import EmbeddingRPNHead
        from mmdet_sparse.models.roi_heads import SparseRoIHead
        for attr, cls in (('rpn_head', EmbeddingRPNHead),
                          ('roi_head', SparseRoIHead)):
            part = getattr(detector, attr, None)
            if not isinstance(part, cls):
                raise ExportError(
                    f'model.{attr} ({type(part).__name__}) cannot be '
                    f"exported: only mmdet_sparse's {cls.__name__} is "
                    'supported')
        if getattr(detector.roi_head, 'with_mask', False):
            raise ExportError(
                'model.roi_head.mask_head '
                f'({type(detector.roi_head.mask_head[0]).__name__}) cannot '
                'be exported: the ONNX graph gives boxes only, and '
                "QueryInst's masks would be dropped without a word. Export "
                'the Sparse '
                'R-CNN config of the same backbone instead, or run QueryInst '
                'in PyTorch (tools/infer.py)')
        for stage in range(detector.roi_head.num_stages):
            extractor = detector.roi_head._extractor(stage)
            if not isinstance(extractor, SingleRoIExtractor):
                raise ExportError(
                    f'RoI extractor {type(extractor).__name__} cannot be '
                    'exported: use ThreadedRoIExtractor or '
                    'SingleRoIExtractor with RoIAlign')
        bad = _unexportable_modules(detector)
        if bad:
            name, cls = bad[0]
            raise ExportError(
                f'module model.{name} ({cls}) cannot be exported to ONNX: '
                'it is a compiled mmcv op without an ONNX export path' +
                (f' ({len(bad) - 1} more such modules)' if len(bad) > 1
                 else ''))
        self.detector = detector
        self.max_per_img = int(
            detector.roi_head.test_cfg.get('max_per_img', 100))

    def _roi_features(self, stage: int, x: Tuple[Tensor],
                      rois: Tensor) -> Tensor:
        from mmdet_sparse.models.roi_heads.roi_extractors import \
            ThreadedRoIExtractor
        extractor = self.detector.roi_head._extractor(stage)
        return ThreadedRoIExtractor.export_forward(
            extractor, tuple(x[:extractor.num_inputs]), rois)

    def forward(self, image: Tensor,
                image_size: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """``(1, 3, H, W)`` image and ``(2,)`` ``(h, w)`` -> boxes
        ``(k, 4)``, scores ``(k,)``, labels ``(k,)``."""
        from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
        det = self.detector
        x = det.extract_feat(image)
        rpn, roi = det.rpn_head, det.roi_head
        size = image_size.to(image.dtype)
        whwh = torch.stack([size[1], size[0], size[1], size[0]])
        boxes = bbox_cxcywh_to_xyxy(
            rpn.init_proposal_bboxes.weight)[None] * whwh[None, None]
        feats = init_feats = rpn.init_proposal_features.weight[None]
        num_proposals = boxes.size(1)
        img_ids = boxes.new_zeros((num_proposals, 1))
        for stage in range(roi.num_stages):
            rois = torch.cat([img_ids, boxes.reshape(-1, 4)], dim=1)
            roi_feats = self._roi_features(stage, x, rois)
            head = roi.bbox_head[stage]
            # The head as the RoI head runs it: with the boxes where it
            # encodes them, from the initial features in a plain cascade.
            cls_score, deltas, feats, _ = roi.run_bbox_head(
                stage, roi_feats, boxes, roi.stage_feats(feats, init_feats),
                whwh[None])
            boxes = head.decode(boxes, deltas)
        scores = roi.bbox_head[-1].scores(cls_score.float())
        num_classes = scores.size(-1)
        scores = scores.flatten(1)
        top = min(self.max_per_img, num_proposals * num_classes)
        top_scores, top_idx = scores.topk(top, dim=1)
        labels = top_idx % num_classes
        box_idx = (top_idx // num_classes)[..., None].expand(-1, -1, 4)
        return boxes.gather(1, box_idx)[0], top_scores[0], labels[0]


@contextmanager
def _module_trace(model: nn.Module) -> Iterator[List[str]]:
    """Keep the stack of modules whose forward is running, so that an
    export failure can name the innermost one."""
    stack: List[str] = []
    handles = []
    for name, module in model.named_modules():
        def pre(_module, _args, name=name):
            stack.append(name)

        def post(_module, _args, _out, name=name):
            if stack and stack[-1] == name:
                stack.pop()
        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))
    try:
        yield stack
    finally:
        for handle in handles:
            handle.remove()


# --------------------------------------------------------- preprocessing ---
def _test_pipeline(cfg: Config) -> list:
    """The test pipeline of ``cfg`` (dataloader's, else ``test_pipeline``)."""
    loader = cfg.get('test_dataloader') or {}
    pipeline = (loader.get('dataset') or {}).get('pipeline')
    if pipeline is None:
        pipeline = cfg.get('test_pipeline')
    if not pipeline:
        raise ExportError('the config has no test pipeline '
                          '(test_dataloader.dataset.pipeline)')
    return list(pipeline)


def preprocess_meta(cfg: Config) -> Dict:
    """The test-time preprocessing of ``cfg`` as plain JSON data.

    Raises:
        ExportError: a test transform or preprocessor option the runtime
            does not reproduce, naming it.
    """
    pre = cfg.model.get('data_preprocessor') or {}
    if pre.get('type', 'DetDataPreprocessor').split('.')[-1] != \
            'DetDataPreprocessor':
        raise ExportError(f"data_preprocessor {pre.get('type')} is not "
                          'supported; DetDataPreprocessor is')
    for key in ('batch_augments', 'pad_mask', 'pad_seg'):
        if pre.get(key):
            raise ExportError(f'data_preprocessor.{key} is not supported')
    meta = dict(
        mean=[float(v) for v in pre.get('mean') or (0., 0., 0.)],
        std=[float(v) for v in pre.get('std') or (1., 1., 1.)],
        bgr_to_rgb=bool(pre.get('bgr_to_rgb', False)
                        or pre.get('rgb_to_bgr', False)),
        pad_size_divisor=int(pre.get('pad_size_divisor', 1)),
        pad_value=float(pre.get('pad_value', 0)),
        color_type='color', imdecode_backend='cv2', resize=None)
    for step in _test_pipeline(cfg):
        kind = str(step['type']).split('.')[-1]
        if kind in _IGNORED_TRANSFORMS:
            continue
        if kind in ('LoadImageFromFile', 'LoadImageFromNDArray'):
            meta['color_type'] = step.get('color_type', 'color')
            meta['imdecode_backend'] = step.get('imdecode_backend', 'cv2')
            if meta['color_type'] != 'color':
                raise ExportError(f"{kind}.color_type="
                                  f"{meta['color_type']!r} is not supported")
        elif kind == 'Resize' and meta['resize'] is None:
            scale = step.get('scale')
            if isinstance(scale, int):
                scale = (scale, scale)
            factor = step.get('scale_factor')
            meta['resize'] = dict(
                scale=list(scale) if scale is not None else None,
                scale_factor=(list(factor) if isinstance(factor, (list,
                                                                  tuple))
                              else factor),
                keep_ratio=bool(step.get('keep_ratio', False)),
                interpolation=step.get('interpolation', 'bilinear'),
                backend=step.get('backend', 'cv2'))
        else:
            raise ExportError(
                f'test pipeline transform {kind} is not supported by the '
                'ONNX runtime (supported: LoadImageFromFile, one Resize, '
                'LoadAnnotations, PackDetInputs)')
    return meta


def _classes(cfg: Config) -> List[str]:
    """Class names: the test dataset's metainfo, else COCO's."""
    dataset = (cfg.get('test_dataloader') or {}).get('dataset') or {}
    classes = (dataset.get('metainfo') or {}).get('classes')
    if classes is None:
        from mmdet.evaluation import get_classes
        classes = get_classes('coco')
    return [str(c) for c in classes]


def default_img_size(meta: Dict) -> Tuple[int, int]:
    """Largest landscape network input of the test resize, padded."""
    div = max(meta['pad_size_divisor'], 1)
    resize = meta['resize'] or {}
    scale = resize.get('scale') or (1333, 800)
    short, long = min(scale), max(scale)
    return (-(-short // div) * div, -(-long // div) * div)


# ---------------------------------------------------------------- export ---
def build_detector(config, checkpoint: Optional[str] = None) -> Tuple:
    """``(detector, cfg)``: the eval-mode model of ``config`` with the
    weights of ``checkpoint`` (random weights when None; pretrained
    backbone checkpoints are never read)."""
    import mmdet_sparse  # noqa: F401
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import DefaultScope
    from mmengine.runner import load_checkpoint

    from mmdet_sparse.registry import MODELS
    cfg = config if isinstance(config, Config) else Config.fromfile(config)
    model_cfg = cfg.model.copy()
    backbone = model_cfg.backbone
    if isinstance(backbone.get('init_cfg'), dict):
        backbone.init_cfg = None
    if backbone.get('type') == 'TimmBackbone':
        backbone.pretrained = False
    with DefaultScope.overwrite_default_scope(
            cfg.get('default_scope', 'mmdet_sparse')):
        model = revert_sync_batchnorm(MODELS.build(model_cfg))
    if checkpoint is not None:
        if not osp.isfile(checkpoint):
            raise FileNotFoundError(f'checkpoint not found: {checkpoint}')
        ckpt = load_checkpoint(model, checkpoint, map_location='cpu',
                               strict=True)
        meta = ckpt.get('meta', {}) if isinstance(ckpt, dict) else {}
        if 'dataset_meta' in meta:
            model.dataset_meta = meta['dataset_meta']
    return model.eval().requires_grad_(False), cfg


def cpu_float32(model: nn.Module) -> nn.Module:
    """``model`` itself when its parameters and buffers are float32 (or
    float64) tensors on the CPU, else a float32 CPU copy of it: the
    exporter traces on the CPU with a float32 example input, and a model
    trained on a GPU (or cast to float16) is left where it is."""
    tensors = list(model.parameters()) + list(model.buffers())
    if all(t.device.type == 'cpu' and t.dtype not in (
            torch.float16, torch.bfloat16) for t in tensors):
        return model
    copy = deepcopy(model).cpu()
    for t in list(copy.parameters()) + list(copy.buffers()):
        if t.dtype in (torch.float16, torch.bfloat16):
            t.data = t.data.float()
    return copy


def export_onnx(config, checkpoint: Optional[str], out: str,
                opset: int = DEFAULT_OPSET,
                img_size: Optional[Sequence[int]] = None,
                dynamic: bool = False,
                model: Optional[nn.Module] = None) -> Dict:
    """Export ``config`` + ``checkpoint`` to the ONNX file ``out``.

    Args:
        config (str | Config): Model config.
        checkpoint (str, optional): Weights; random when None.
        out (str): ``.onnx`` file to write (written to a temporary file in
            the same folder, then moved, so that an old file survives a
            failed export).
        opset (int): ONNX opset, ``16..21``.
        img_size (Sequence[int], optional): ``(H, W)`` of the example
            input (the fixed input size without ``dynamic``); multiples of
            ``pad_size_divisor``. Defaults to the largest landscape input
            of the test resize.
        dynamic (bool): Height and width free, in multiples of
            ``pad_size_divisor``.
        model (nn.Module, optional): An already built detector (its
            weights are used; ``checkpoint`` is ignored).

    Returns:
        dict: The metadata written to the model.

    Raises:
        ExportError: unsupported opset, module, transform or size, naming
            it.
    """
    import onnx
    check_opset(opset)
    if model is None:
        model, cfg = build_detector(config, checkpoint)
    else:
        cfg = config if isinstance(config, Config) else \
            Config.fromfile(config)
        model = cpu_float32(model).eval()
    graph = SparseRCNNGraph(model).eval()  # refuses what it cannot export
    pre = preprocess_meta(cfg)
    div = max(pre['pad_size_divisor'], 1)
    height, width = tuple(img_size) if img_size else default_img_size(pre)
    if height % div or width % div or height <= 0 or width <= 0:
        raise ExportError(f'--img-size {height} {width} must be positive '
                          f'multiples of pad_size_divisor={div}')
    image = torch.randn(1, 3, height, width,
                        generator=torch.Generator().manual_seed(0))
    image_size = torch.tensor([height, width], dtype=torch.int64)
    dynamic_shapes = None
    if dynamic:
        blocks_h = torch.export.Dim('h_blocks', min=1, max=8192 // div)
        blocks_w = torch.export.Dim('w_blocks', min=1, max=8192 // div)
        dynamic_shapes = dict(
            image={2: div * blocks_h, 3: div * blocks_w}, image_size=None)
    with torch.no_grad(), _module_trace(graph) as stack:
        try:
            # torch.export first (non-strict), so that a failure is
            # reported once instead of after the exporter's fallbacks
            exported = torch.export.export(
                graph, (image, image_size), dynamic_shapes=dynamic_shapes,
                strict=False)
        except Exception as exc:
            where = stack[-1] if stack else ''
            name = where.replace('detector.', 'model.', 1) if where else \
                'the detector'
            module = graph.get_submodule(where) if where else graph
            first = (str(exc).strip().splitlines() or [repr(exc)])[0]
            raise ExportError(
                f'{name} ({type(module).__name__}) failed to export to '
                f'ONNX (opset {opset}): {type(exc).__name__}: '
                f'{first[:500]}') from exc
    program = torch.onnx.export(
        exported, dynamo=True, opset_version=opset,
        input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
        verbose=False)
    proto = program.model_proto
    domains = {node.domain for node in proto.graph.node} | {
        node.domain for fn in proto.functions for node in fn.node}
    custom = domains - {'', 'ai.onnx'}
    if custom:
        raise ExportError(f'the exported graph uses non-standard operator '
                          f'domains {sorted(custom)}')
    meta = dict(
        format=1,
        preprocess=pre,
        classes=_classes(cfg),
        dynamic=bool(dynamic),
        img_size=[height, width],
        opset=opset,
        num_proposals=int(model.rpn_head.num_proposals),
        max_per_img=graph.max_per_img,
        backbone=type(model.backbone).__name__,
        config=osp.basename(cfg.filename) if cfg.filename else None)
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(meta)
    out_dir = osp.dirname(osp.abspath(out))
    os.makedirs(out_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix='.onnx.tmp', dir=out_dir)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it owner-only
        onnx.save(proto, tmp)
        os.replace(tmp, out)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)
    return meta
