"""RoIAlign's feature gradient as two small matrix products per RoI.

With a fixed ``sampling_ratio`` RoIAlign is separable: every sample point's
bilinear weight is the product of a weight along y and one along x, and a
sample outside the map contributes nothing whichever coordinate is out. So
the pooled output of one RoI is

    out[c] = Ay @ F[c] @ Ax^T      Ay: (P, H), Ax: (Q, W)

where ``Ay[p, h]`` sums the y-weights of bin row ``p``'s samples that fall on
feature row ``h`` (divided by the samples per bin), likewise ``Ax``. The
gradient of the features is then ``Ay^T @ G[c] @ Ax`` per RoI, added into
the map. ``Ay`` and ``Ax`` have non-zeros only in the few rows and columns a
RoI covers, so they are built on that window (``hc x wc``), and a batch of
RoIs becomes two batched matrix products and one strided add per RoI,
instead of
the per-channel, per-sample scatter of the CPU kernels. The result equals
torchvision's / mmcv's ``roi_align`` backward up to float rounding (the sum
order differs).
"""
from typing import List, Optional, Tuple

import torch
from torch import Tensor

# Elements of one chunk's (n, hc, wc, C) gradient window: bounds the
# temporary memory to about 64 MiB whatever the number of RoIs.
_CHUNK_ELEMENTS = 1 << 24


def _axis_weights(start: Tensor, length: Tensor, size: int, bins: int,
                  grid: int) -> Tuple[Tensor, Tensor, Tensor]:
    """Interpolation weights of one axis, on each RoI's own window.

    Mirrors the sample placement and border rules of torchvision's CPU
    ``roi_align`` (``bilinear_interpolate``).

    Args:
        start (Tensor): ``(n,)`` RoI start on this axis, in feature pixels
            (after the scale and the ``aligned`` offset).
        length (Tensor): ``(n,)`` RoI length on this axis.
        size (int): Feature map size on this axis.
        bins (int): Output bins on this axis.
        grid (int): Samples per bin on this axis.

    Returns:
        tuple: ``weights (n, bins, window)``, ``first (n,)``, the feature
        index of window column 0, and ``extent (n,)``, the columns each
        RoI's own weights span (the rest of its window is zero).
    """
    n = start.numel()
    bin_size = length / bins
    pos = torch.arange(bins, dtype=start.dtype, device=start.device)
    sub = (torch.arange(grid, dtype=start.dtype, device=start.device) +
           0.5)
    # (n, bins, grid) sample coordinates, as the kernel computes them.
    coord = (start[:, None, None] + pos[None, :, None] *
             bin_size[:, None, None]) + \
        sub[None, None, :] * bin_size[:, None, None] / grid
    valid = (coord >= -1.0) & (coord <= size)
    coord = coord.clamp(min=0)
    low = coord.long()
    at_edge = low >= size - 1
    low = torch.where(at_edge, torch.full_like(low, size - 1), low)
    high = torch.where(at_edge, low, low + 1)
    coord = torch.where(at_edge, low.to(coord.dtype), coord)
    frac = coord - low.to(coord.dtype)
    scale = valid.to(coord.dtype) / grid
    w_low, w_high = (1 - frac) * scale, frac * scale

    big = torch.iinfo(torch.long).max
    first = torch.where(valid, low, big).flatten(1).amin(1)
    last = torch.where(valid, high, -1).flatten(1).amax(1)
    first = torch.where(last >= 0, first, torch.zeros_like(first))
    extent = (last - first).clamp(min=0) + 1
    window = int(extent.max()) if n else 1
    weights = coord.new_zeros((n, bins, window))
    offset = first[:, None, None]
    weights.scatter_add_(2, (low - offset).clamp(0, window - 1), w_low)
    weights.scatter_add_(2, (high - offset).clamp(0, window - 1), w_high)
    return weights, first, extent


def _extents(rois: Tensor, spatial_scale: float,
             aligned: bool) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """``start_y, len_y, start_x, len_x`` of each RoI in feature pixels,
    as the kernels compute them."""
    offset = 0.5 if aligned else 0.0
    boxes = rois[:, 1:]
    start_x = boxes[:, 0] * spatial_scale - offset
    start_y = boxes[:, 1] * spatial_scale - offset
    len_x = boxes[:, 2] * spatial_scale - offset - start_x
    len_y = boxes[:, 3] * spatial_scale - offset - start_y
    if not aligned:
        len_x, len_y = len_x.clamp(min=1.0), len_y.clamp(min=1.0)
    return start_y, len_y, start_x, len_x


def _window_sides(len_y: Tensor, len_x: Tensor, height: int,
                  width: int) -> Tuple[Tensor, Tensor]:
    """Upper bounds of each RoI's window height and width."""
    return ((len_y.ceil() + 3).clamp(max=height).long(),
            (len_x.ceil() + 3).clamp(max=width).long())


def window_area(rois: Tensor, spatial_scale: float, aligned: bool,
                height: int, width: int) -> Tensor:
    """``(n,)`` bound on the feature pixels each RoI's gradient touches.

    The cost of :func:`roi_align_feature_grad` grows with it, that of the
    sampling kernels does not; callers can route large RoIs to the latter.
    """
    _, len_y, _, len_x = _extents(rois, spatial_scale, aligned)
    win_y, win_x = _window_sides(len_y, len_x, height, width)
    return win_y * win_x


def _chunks(len_y: Tensor, len_x: Tensor, height: int, width: int,
            channels: int) -> List[Tensor]:
    """Split RoIs (at least one) into groups whose padded windows fit the
    element budget.

    A group's windows are padded to its largest height and width, so RoIs
    are grouped by window shape (height and width each within a factor of
    ``sqrt(2)``), not by area: a tall and a wide RoI of the same area would
    pad to a square many times their size.
    """
    win_y, win_x = _window_sides(len_y, len_x, height, width)
    key_y = torch.ceil(2 * torch.log2(win_y.clamp(min=1).double())).long()
    key_x = torch.ceil(2 * torch.log2(win_x.clamp(min=1).double())).long()
    order = torch.argsort(key_y * (int(key_x.max()) + 1) + key_x,
                          stable=True)
    groups, start, max_y, max_x, key = [], 0, 0, 0, None
    for i, (wy, wx, ky, kx) in enumerate(
            zip(win_y[order].tolist(), win_x[order].tolist(),
                key_y[order].tolist(), key_x[order].tolist())):
        max_y, max_x = max(max_y, wy), max(max_x, wx)
        if i > start and ((ky, kx) != key or (i + 1 - start) * max_y *
                          max_x * channels > _CHUNK_ELEMENTS):
            groups.append(order[start:i])
            start, max_y, max_x = i, wy, wx
        key = (ky, kx)
    groups.append(order[start:])
    return groups


def roi_align_feature_grad(grad_out: Tensor, rois: Tensor,
                           feat_shape: Tuple[int, int, int, int],
                           spatial_scale: float, sampling_ratio: int,
                           aligned: bool,
                           out: Optional[Tensor] = None) -> Tensor:
    """Gradient of RoIAlign (average pooling) with respect to its features.

    Args:
        grad_out (Tensor): ``(n, C, P, Q)`` gradient of the pooled output.
        rois (Tensor): ``(n, 5)`` RoIs: image index, ``x1, y1, x2, y2`` in
            image pixels.
        feat_shape (tuple): ``(B, C, H, W)`` of the feature map.
        spatial_scale (float): Feature pixels per image pixel.
        sampling_ratio (int): Samples per bin along each axis (> 0).
        aligned (bool): Half-pixel offset, as in ``RoIAlign(aligned=True)``.
        out (Tensor, optional): ``(B, C, H, W)`` contiguous buffer to add
            into; a zero one is made when not given.

    Returns:
        Tensor: ``(B, C, H, W)`` gradient, contiguous (``out`` when
        given).
    """
    if sampling_ratio <= 0:
        raise ValueError('the separable RoIAlign gradient needs a fixed '
                         f'sampling_ratio > 0, got {sampling_ratio}')
    num_imgs, channels, height, width = feat_shape
    grad = out if out is not None else grad_out.new_zeros(feat_shape)
    n, _, bins_y, bins_x = grad_out.shape
    if n:
        start_y, len_y, start_x, len_x = _extents(
            rois.to(grad_out.dtype), spatial_scale, aligned)
        img_ids = rois[:, 0].long()
        groups = _chunks(len_y, len_x, height, width, channels)
        order = torch.cat(groups)
        # (n, C * P, Q) in chunk order.
        grad_rows = grad_out[order].reshape(n, channels * bins_y, bins_x)
        start = 0
        for idx in groups:
            stop = start + idx.numel()
            wy, y0, ext_y = _axis_weights(start_y[idx], len_y[idx], height,
                                          bins_y, sampling_ratio)
            wx, x0, ext_x = _axis_weights(start_x[idx], len_x[idx], width,
                                          bins_x, sampling_ratio)
            m, hc, wc = idx.numel(), wy.size(2), wx.size(2)
            # Along x: (m, C * P, Q) @ (m, Q, wc) -> (m, C, P, wc).
            cols = torch.bmm(grad_rows[start:stop], wx)
            # Along y: (m, hc, P) @ (m, P, C * wc) -> (m, hc, C, wc), read
            # as (m, C, hc, wc): the features' channels-first layout, so
            # autograd adds the stages' gradients without transposing maps.
            cols = cols.view(m, channels, bins_y, wc).transpose(1, 2)
            window = torch.bmm(wy.transpose(1, 2),
                               cols.reshape(m, bins_y, channels * wc))
            window = window.view(m, hc, channels, wc).transpose(1, 2)
            # Each RoI's own extent, window by window: a loop of strided
            # adds beats index_add_ / index_put_ on the CPU.
            for k, (img, top, left, h, w) in enumerate(
                    zip(img_ids[idx].tolist(), y0.tolist(), x0.tolist(),
                        ext_y.tolist(), ext_x.tolist())):
                grad[img, :, top:top + h, left:left + w] += \
                    window[k, :, :h, :w]
            start = stop
    return grad
