"""Multi-level RoIAlign written for graph export (ONNX).

The thread pool of :class:`ThreadedRoIExtractor` and mmcv's ``RoIAlign``
cannot be captured by ``torch.export``: the first becomes a constant, the
second an opaque custom node. :func:`export_roi_align` computes the same
values with torchvision's ``roi_align`` (which exports to the standard ONNX
``RoiAlign``, ``half_pixel`` with ``aligned=True``), one call per pyramid
level on the RoIs of that level (``nonzero`` gather), written back in RoI
order (``index_copy`` scatter). Values equal the extractor's (the same
kernel, the same level mapping).
"""
from typing import Sequence

import torch
from torch import Tensor
from torchvision.ops import roi_align


def is_exporting() -> bool:
    """Whether a graph is being captured for export (``torch.export``,
    the ONNX exporters or TorchScript tracing)."""
    compiler = getattr(torch, 'compiler', None)
    if compiler is not None and hasattr(compiler, 'is_exporting') and \
            compiler.is_exporting():
        return True
    return bool(torch.onnx.is_in_onnx_export() or torch.jit.is_tracing())


def export_roi_align(feats: Sequence[Tensor], rois: Tensor, levels: Tensor,
                     output_size: Sequence[int],
                     spatial_scales: Sequence[float], sampling_ratio: int,
                     aligned: bool) -> Tensor:
    """Average RoIAlign of each RoI on its pyramid level.

    Args:
        feats (Sequence[Tensor]): ``L`` maps ``(B, C, H_l, W_l)``.
        rois (Tensor): ``(n, 5)``: image index, ``x1, y1, x2, y2`` in
            input pixels.
        levels (Tensor): ``(n,)`` integer level of each RoI, in
            ``[0, L)``.
        output_size (Sequence[int]): ``(S_h, S_w)``.
        spatial_scales (Sequence[float]): ``1 / stride`` of each level.
        sampling_ratio (int): Samples per bin along each axis (0: adaptive).
        aligned (bool): Half-pixel offset (``RoIAlign(aligned=True)``).

    Returns:
        Tensor: ``(n, C, S_h, S_w)`` pooled features, in RoI order.
    """
    out_h, out_w = int(output_size[0]), int(output_size[1])
    if len(feats) == 1:
        return roi_align(feats[0], rois, (out_h, out_w), spatial_scales[0],
                         sampling_ratio, aligned)
    out = rois.new_zeros((rois.size(0), feats[0].size(1), out_h, out_w))
    for level, feat in enumerate(feats):
        rows = (levels == level).nonzero().squeeze(1)
        pooled = roi_align(feat, rois[rows], (out_h, out_w),
                           spatial_scales[level], sampling_ratio, aligned)
        out = out.index_copy(0, rows, pooled)
    return out
