"""Resampling between plate pixels and the model's square input/output grids.

Down: area average in linear light (exact for whole-number ratios), so highlights keep their energy.
The same area weights, as a few taps per output pixel, are applied with torch on the model's device in float32
(`area_resize_tensor`): the feed's downsample of a 4K plate to 1024² in milliseconds on a GPU instead of a second
(1080p: 20 ms on a CPU core, 4K: 86 ms).
Up: the bilinear rule of torch's `interpolate(align_corners=False)` that sam2 uses, evaluated at the
centres of any window of pixels, so data windows outside the display window (overscan) extend the edge.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


def _area_axis(img: np.ndarray, size: int, axis: int) -> np.ndarray:
    n = img.shape[axis]
    if size == n:
        return img
    if size > n:
        return _linear_axis(img, size, axis)
    moved = np.moveaxis(img, axis, 0).astype(np.float64)
    integral = np.concatenate([np.zeros((1,) + moved.shape[1:]), np.cumsum(moved, axis=0)])
    edges = np.arange(size + 1) * (n / size)
    i = np.minimum(np.floor(edges).astype(np.int64), n - 1)
    frac = (edges - i).reshape((-1,) + (1,) * (moved.ndim - 1))
    at = integral[i] + frac * moved[i]  # the integral evaluated at each edge
    out = (at[1:] - at[:-1]) / (n / size)
    return np.moveaxis(out.astype(np.float32), 0, axis)


def _linear_axis(img: np.ndarray, size: int, axis: int) -> np.ndarray:
    i0, i1, w = linear_taps(img.shape[axis], np.arange(size) + 0.5, img.shape[axis] / size)
    shape = [1] * img.ndim
    shape[axis] = size
    w = w.reshape(shape).astype(np.float32)
    return np.take(img, i0, axis=axis) * (1 - w) + np.take(img, i1, axis=axis) * w


def area_resize(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W[, C]) -> (height, width[, C]); area average when shrinking, linear when enlarging."""
    return _area_axis(_area_axis(img, height, 0), width, 1)


@lru_cache(maxsize=16)
def area_taps(n: int, size: int):
    """`area_resize`'s weights along one axis of n pixels -> size: output j is sum_t w[j, t] * x[index[j, t]].

    Pixel k's share of the integral up to edge e is clip(e - k, 0, 1), so an output's weight on k is the
    difference of that at its two edges; enlarging gives the two taps of the linear rule.
    """
    if size == n:
        return np.arange(n)[:, None], np.ones((n, 1))
    if size > n:
        i0, i1, w = linear_taps(n, np.arange(size) + 0.5, n / size)
        w = w.astype(np.float64)
        return np.stack([i0, i1], 1), np.stack([1 - w, w], 1)
    edges = np.arange(size + 1) * (n / size)
    first = np.minimum(np.floor(edges[:-1]).astype(np.int64), n - 1)
    taps = int(np.ceil(n / size)) + 1
    index = np.minimum(first[:, None] + np.arange(taps), n - 1)
    k = first[:, None] + np.arange(taps)  # unclamped: a tap past the end gets weight 0
    w = (np.clip(edges[1:, None] - k, 0, 1) - np.clip(edges[:-1, None] - k, 0, 1)) * (size / n)
    return index, w


def area_resize_tensor(img, height: int, width: int):
    """`area_resize` of an (H, W, C) float32 torch tensor, on its device, contiguous: the rows as a sparse product
    (each output row a handful of input rows), then the columns as a handful of gathered taps (a sparse product
    there leaves the result transposed: a 20 ms copy of a 1024² RGB image on a CPU core)."""
    import torch

    h, w, c = img.shape
    rows = torch.sparse.mm(area_matrix(h, height, img.device), img.reshape(h, w * c)).reshape(height, w, c)
    index, weight = area_columns(w, width, img.device)
    out = rows.index_select(1, index[0]).mul_(weight[0])
    for k in range(1, len(index)):
        out.add_(rows.index_select(1, index[k]).mul_(weight[k]))
    return out


@lru_cache(maxsize=16)
def area_matrix(n: int, size: int, device):
    """`area_taps` as a sparse (size, n) float32 matrix."""
    import torch

    index, w = area_taps(n, size)
    rows = np.repeat(np.arange(size), index.shape[1])
    m = torch.sparse_coo_tensor(
        np.stack([rows, index.ravel()]),
        torch.from_numpy(w.ravel().astype(np.float32)),
        (size, n),
        check_invariants=True,
    )
    return m.coalesce().to(device)


@lru_cache(maxsize=16)
def area_columns(n: int, size: int, device):
    """`area_taps` as torch tensors on `device`: tap t's indices (size,) and weights (size, 1), one per tap."""
    import torch

    index, w = area_taps(n, size)
    return (
        torch.from_numpy(np.ascontiguousarray(index.T)).to(device),
        torch.from_numpy(np.ascontiguousarray(w.T, np.float32))[:, :, None].to(device),
    )


def linear_taps(n: int, centres: np.ndarray, scale: float):
    """Source indices and weights of torch's bilinear rule for output pixel `centres` (in output pixels)."""
    src = np.clip(centres * scale - 0.5, 0.0, n - 1)
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, n - 1)
    return i0, i1, (src - i0).astype(np.float32)


def upsample_to_window(grid: np.ndarray, display_size, window) -> np.ndarray:
    """Sample a square model grid (L, L), which covers the display window, at every pixel of `window`.

    `display_size` is (width, height); `window` is (x, y, width, height) relative to the display origin.
    """
    dw, dh = display_size
    wx, wy, ww, wh = window
    ly, lx = grid.shape
    y0, y1, fy = linear_taps(ly, np.arange(wy, wy + wh) + 0.5, ly / dh)
    x0, x1, fx = linear_taps(lx, np.arange(wx, wx + ww) + 0.5, lx / dw)
    rows = grid[y0] * (1 - fy)[:, None] + grid[y1] * fy[:, None]
    return rows[:, x0] * (1 - fx) + rows[:, x1] * fx
