"""Hole filling: small enclosed holes in a matte become solid, small stray islands disappear.

SAM 2.1 does this with `fill_hole_area`, which needs its optional CUDA extension and is otherwise
skipped (docs/architecture.md §5), so we do it ourselves, in numpy. Connected components are found on
scanline runs (a 2K matte has thousands of runs, not millions of pixels) joined by a vectorised
union-find. Foreground is 8-connected and background 4-connected, the usual complementary pair,
so a hole touching its surroundings only at a corner is still enclosed.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

from mattebridge.core.matte.boxfilter import dilate


def _runs(mask: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, starts and (exclusive) ends of the horizontal runs of True, in row-major order."""
    h, w = mask.shape
    padded = np.zeros((h, w + 2), np.int8)
    padded[:, 1:-1] = mask
    d = np.diff(padded, axis=1)
    rs, starts = np.nonzero(d == 1)
    _, ends = np.nonzero(d == -1)
    return rs, starts, ends


def _find_roots(parent: np.ndarray) -> np.ndarray:
    while True:  # pointer jumping: every node ends pointing at its root
        nxt = parent[parent]
        if np.array_equal(nxt, parent):
            return parent
        parent = nxt


def label_runs(mask: np.ndarray, eight: bool):
    """Connected components of `mask`: (rows, starts, ends, component per run, number of components).

    Components are numbered 0..n-1 in order of their first run.
    """
    rows, starts, ends = _runs(mask)
    n, w = len(rows), mask.shape[1]
    if n == 0:
        return rows, starts, ends, np.zeros(0, np.int64), 0
    # Runs a (row r) and b (row r + 1) touch when their column spans overlap (by one more column
    # on each side when corners connect). Keys put every run on one line: row * (w + 2) + column.
    slack = 1 if eight else 0
    key = rows.astype(np.int64) * (w + 2)
    lo = np.searchsorted(key + ends, key - (w + 2) + starts - slack, side="right")
    hi = np.searchsorted(key + starts, key - (w + 2) + ends + slack, side="left")
    counts = np.maximum(hi - lo, 0)
    b = np.repeat(np.arange(n), counts)
    a = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts) + np.repeat(lo, counts)
    parent = np.arange(n)
    while a.size:  # hook each edge's larger root under its smaller one, compress, repeat
        ra, rb = parent[a], parent[b]
        keep = ra != rb
        if not keep.any():
            break
        a, b, ra, rb = a[keep], b[keep], ra[keep], rb[keep]
        np.minimum.at(parent, np.maximum(ra, rb), np.minimum(ra, rb))
        parent = _find_roots(parent)
    roots, comp = np.unique(parent, return_inverse=True)
    return rows, starts, ends, comp.reshape(-1), len(roots)


def _paint(shape, rows, starts, ends, selected: np.ndarray) -> np.ndarray:
    """Boolean image of the selected runs (a +1/-1 at each run's ends, summed along the row)."""
    h, w = shape
    marks = np.zeros((h, w + 1), np.int32)
    np.add.at(marks, (rows[selected], starts[selected]), 1)
    np.add.at(marks, (rows[selected], ends[selected]), -1)
    return np.cumsum(marks, axis=1)[:, :w] > 0


def small_components(
    mask: np.ndarray, max_area: int, eight: bool, enclosed: bool = False, spare_largest: bool = False
) -> np.ndarray:
    """Pixels of the components of `mask` with area <= max_area, except those touching the image
    border (when `enclosed`) and the largest one (when `spare_largest`)."""
    rows, starts, ends, comp, n = label_runs(mask, eight)
    if n == 0:
        return np.zeros(mask.shape, bool)
    area = np.bincount(comp, weights=ends - starts, minlength=n)
    small = area <= max_area
    if enclosed:
        h, w = mask.shape
        border = (rows == 0) | (rows == h - 1) | (starts == 0) | (ends == w)
        small[comp[border]] = False
    if spare_largest:
        small[np.argmax(area)] = False
    return _paint(mask.shape, rows, starts, ends, small[comp])


def _clean(values: np.ndarray, max_area: int, threshold: float, solid: float, clear: float, grow: int) -> np.ndarray:
    out = np.array(values, np.float32, copy=True)
    if max_area <= 0:
        return out
    inside = out > threshold
    holes = small_components(~inside, max_area, eight=False, enclosed=True)
    islands = small_components(inside, max_area, eight=True, spare_largest=True)  # a small object stays
    # grow into the soft fringe on the other side of the threshold, but never into a different
    # component: a hole's fringe is foreground, an island's is background
    holes = dilate(holes, grow) & (inside | holes)
    islands = dilate(islands, grow) & (~inside | islands)
    out[holes] = np.maximum(out[holes], solid)
    out[islands] = np.minimum(out[islands], clear)
    return out


def fill_holes(alpha: np.ndarray, max_area: int, threshold: float = 0.5, grow: int = 2) -> np.ndarray:
    """Alpha with enclosed holes of at most `max_area` pixels (below `threshold`) set to 1 and islands
    of at most `max_area` pixels (above it) set to 0, each with `grow` pixels of its soft fringe,
    so no ring of half-transparent edge is left behind. Holes touching the border are kept, and so
    is the largest island, so a small object far away is not erased."""
    return _clean(alpha, max_area, threshold, 1.0, 0.0, grow)


def fill_holes_logits(logits: np.ndarray, max_area: int) -> np.ndarray:
    """The same on the model's (L, L) logit grid (area in grid cells), before upsampling: hole cells
    and their one-cell rim rise to at least the object's median positive logit, island cells and their
    rim drop to at most the median negative logit, so upsampling leaves no dip or speck behind."""
    logits = np.asarray(logits, np.float32)
    pos, neg = logits[logits > 0], logits[logits <= 0]
    solid = float(np.median(pos)) if pos.size else 0.1  # 0.1 / -0.1: sam2's own fill values
    clear = float(np.median(neg)) if neg.size else -0.1
    return _clean(logits, max_area, 0.0, solid, clear, 1)
