"""Resampling between plate pixels and the model's square input/output grids.

Down: area average in linear light (exact for whole-number ratios), so highlights keep their energy.
Up: the bilinear rule of torch's `interpolate(align_corners=False)` that sam2 uses, evaluated at the
centres of any window of pixels, so data windows outside the display window (overscan) extend the edge.
"""

from __future__ import annotations

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
