"""Box sums by running sums: O(pixels) whatever the radius. Shared by refine, holes and temporal."""

from __future__ import annotations

import numpy as np


def box_sum(x, r: int, xp=np):
    """Sum over a (2r+1)^2 window clipped at the borders, along axes 0 and 1 (numpy, or torch as xp)."""
    for axis in (0, 1):
        n = x.shape[axis]
        c = xp.cumsum(x, axis)
        zero = c[:1] * 0 if axis == 0 else c[:, :1] * 0
        c = xp.concatenate([zero, c], axis) if xp is np else xp.cat([zero, c], axis)
        hi = np.minimum(np.arange(n) + r + 1, n)
        lo = np.maximum(np.arange(n) - r, 0)
        if xp is not np:
            hi, lo = xp.as_tensor(hi, device=x.device), xp.as_tensor(lo, device=x.device)
        x = c[hi] - c[lo] if axis == 0 else c[:, hi] - c[:, lo]
    return x


def box_mean(x: np.ndarray, r: int) -> np.ndarray:
    """Mean over the window, counting only pixels inside the image (so borders are not darkened)."""
    n = box_sum(np.ones(x.shape[:2]), r)
    return box_sum(x.astype(np.float64), r) / (n if x.ndim == 2 else n[..., None])


def dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """Binary dilation by a (2r+1)^2 square."""
    if r <= 0:
        return mask.copy()
    return box_sum(mask.astype(np.float32), r) > 0.5
