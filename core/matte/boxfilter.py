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


def box_sum_valid(x, r: int, axes=(0, 1), xp=np):
    """Sums over the whole (2r+1)-wide windows along `axes`: each shrinks by 2r (numpy, or torch as xp).

    Running sums in x's own dtype: in float32 keep the arrays short (a tile, not a 4K row) and centred,
    so the difference of two running sums keeps the window's digits. numpy's cumsum does not vectorise
    (3-10 ns an element, measured); a loop of whole-slice adds does, when the axes after the summed
    ones are long and contiguous (~0.5 ns): keep the summed axes first.
    """
    for axis in axes:
        n = x.shape[axis]
        if xp is np:
            c = np.empty(x.shape[:axis] + (n + 1,) + x.shape[axis + 1 :], x.dtype)
            cv, xv = np.moveaxis(c, axis, 0), np.moveaxis(x, axis, 0)
            cv[0] = 0
            for i in range(n):
                np.add(cv[i], xv[i], out=cv[i + 1])
        else:
            c = xp.cat([xp.zeros_like(x.narrow(axis, 0, 1)), x.cumsum(axis)], axis)
        hi, lo = [slice(None)] * c.ndim, [slice(None)] * c.ndim
        hi[axis], lo[axis] = slice(2 * r + 1, n + 1), slice(0, n - 2 * r)
        x = c[tuple(hi)] - c[tuple(lo)]
    return x


def window_sums(x: np.ndarray, width: int, axis: int, out=None) -> np.ndarray:
    """Sums of `width` consecutive elements along `axis` (which shrinks by width - 1), built from sums of
    power-of-two runs: log2(width) + popcount(width) - 1 whole-array adds instead of a loop over the axis,
    and pairwise, so float32 keeps the window's digits without running totals. Written into `out` if given."""

    def part(a, start, n):
        at = [slice(None)] * a.ndim
        at[axis] = slice(start, start + n)
        return a[tuple(at)]

    n = x.shape[axis] - width + 1
    runs = [x]  # runs[k]: sums of 2^k consecutive elements
    while 2 << (len(runs) - 1) <= width:
        size, last = 1 << (len(runs) - 1), runs[-1]
        runs.append(part(last, 0, last.shape[axis] - size) + part(last, size, last.shape[axis] - size))
    size, rest = 1 << (len(runs) - 1), width - (1 << (len(runs) - 1))
    overlap = size - rest
    if rest and overlap < rest and overlap & (overlap - 1) == 0:  # e.g. 31 = 16 + 16 - 1: two adds, not four
        acc = np.add(part(runs[-1], 0, n), part(runs[-1], rest, n), out=out)
        return np.subtract(acc, part(runs[overlap.bit_length() - 1], rest, n), out=acc)
    terms, start = [], 0
    for k in reversed(range(len(runs))):
        if width >> k & 1:
            terms.append(part(runs[k], start, n))
            start += 1 << k
    if len(terms) == 1:  # width a power of two
        if out is None:
            return terms[0].copy()
        out[...] = terms[0]
        return out
    acc = np.add(terms[0], terms[1], out=out)
    for t in terms[2:]:
        acc += t
    return acc


def box_sum_tiles(x: np.ndarray, r: int) -> np.ndarray:
    """(..., H, W) -> (..., H - 2r, W - 2r): sums over the whole (2r+1)^2 windows of each tile (`window_sums`).

    Rows first; then columns as windows along the flattened array, whose runs are long and contiguous (a window
    along a 100-pixel row alone is a short strided run), dropping the windows that wrap onto the next row."""
    width = 2 * r + 1
    rows = window_sums(x, width, x.ndim - 2)
    flat = rows.reshape(-1)
    n = flat.shape[0] - width + 1
    out = np.empty(flat.shape, x.dtype)
    window_sums(flat, width, 0, out=out[:n])
    out[n:] = 0
    return out.reshape(rows.shape)[..., : rows.shape[-1] - width + 1]


def box_mean(x: np.ndarray, r: int) -> np.ndarray:
    """Mean over the window, counting only pixels inside the image (so borders are not darkened)."""
    n = box_sum(np.ones(x.shape[:2]), r)
    return box_sum(x.astype(np.float64), r) / (n if x.ndim == 2 else n[..., None])


def dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """Binary dilation by a (2r+1)^2 square."""
    if r <= 0:
        return mask.copy()
    return box_sum(mask.astype(np.float32), r) > 0.5
