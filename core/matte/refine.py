"""Edge refinement for `--edge soft`: a colour guided filter (He et al., TPAMI 2013) snaps the model's
blurry, stair-stepped alpha (upsampled from 1/4 of the model's input) to the plate's own edges.

Only a narrow band around the alpha's 0.5 contour is filtered; elsewhere the matte is solid 0 or 1,
so the filter cannot bleed plate texture into the core or the background. The frame is cut into
tiles and only the tiles that hold the band are filtered, each with a halo of twice the radius (the
filter's reach: window statistics, then window means of the coefficients), so a tile's result is the
whole-image filter's. Box filters run in float32 on centred values: on the CPU, numpy sums of power-of-two
runs, a few crops at a time, up to RUN tiles side by side sharing one crop (about log2 of the window's width
adds per pixel and axis, and no running totals to lose digits to: within 2e-7 of float64 on real footage); on a
device, torch's running sums over the tiles in one batch. A person's edge on 2 CPU cores: 1080p, radius 8,
80 -> 20 ms a frame; 4K, radius 15, 262 -> 67 ms (the slice-add running sums before, same matte within 5e-6); an
edge through every tile (a ragged object filling the frame): 1080p 185 ms, 4K 0.9 s.

At large radii (a small model input: 30 px at 1080p for a 256 px model) the halos outgrow the tiles; there the
CPU runs the Fast Guided Filter (He & Sun 2015): the coefficients on s x s block means of the band's bounding
region at radius / s, interpolated back to the band's pixels. 1080p at 256: 0.31 -> 0.07 s a frame; its
difference from the exact filter is stated and tested in tests/test_refine_tiles.py.
"""

from __future__ import annotations

import math
from typing import Tuple

import numpy as np

from mattebridge.core.errors import MatteBridgeError
from mattebridge.core.matte.boxfilter import box_sum_tiles, box_sum_valid

TILE = 64  # px; smaller tiles follow the edge more closely but pay their 2-radius halo more often
FAST_RADIUS = 8  # the Fast Guided Filter's radius at its subsampled scale (see `subsampling`)
CHUNK_CPU, CHUNK_DEVICE = 64, 512  # tiles filtered at once: bounds the memory (~30 MB at r = 8 with numpy)
RUN = 16  # tiles side by side filtered as one crop, sharing halos (a frame-wide band: 2 -> 16 is 15 % faster at
# 1080p, 25 % at 4K; a crop stays within 16 tiles' memory)
BLOCK_PIXELS = 80_000  # crop pixels the CPU filters at once: a statistic's arrays stay in a core's L2 cache
# the window statistics: (p, the guide's channels) by index, or products of two of them
STATS = ((0,), (1,), (2,), (3,), (1, 0), (2, 0), (3, 0), (1, 1), (1, 2), (1, 3), (2, 2), (2, 3), (3, 3))


def compress_guide(guide, xp=np):
    """Scene-linear RGB -> a log-like 0..~3 scale, so a highlight does not swamp the edge contrast
    that lives in mid-tones and shadows (1.0 -> 1.0, 0.18 -> 0.41, 100 -> 3.0)."""
    out = xp.log1p(8.0 * guide.clip(min=0.0)) / math.log1p(8.0)
    return out.astype(np.float32) if xp is np else out


def contour(inside: np.ndarray) -> np.ndarray:
    """The pixels on either side of every change of `inside` between 4-neighbours."""
    edge = np.zeros_like(inside)
    across, down = inside[:, 1:] != inside[:, :-1], inside[1:, :] != inside[:-1, :]
    edge[:, 1:] |= across
    edge[:, :-1] |= across
    edge[1:, :] |= down
    edge[:-1, :] |= down
    return edge


def edge_tiles(edge: np.ndarray, reach: int, tile: int) -> Tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the `tile`-pixel tiles holding a pixel within `reach` of `edge`: those whose square,
    widened by `reach` on every side, holds an edge pixel. A pass over each row of tiles, then prefix counts
    along it (a loop over the edge's pixels cost 24 ms at 1080p when the edge ran through every tile)."""
    h, w = edge.shape
    starts = np.arange(0, h, tile)
    near = np.stack([edge[max(y - reach, 0) : y + tile + reach].any(axis=0) for y in starts])  # (tile rows, w)
    counts = np.concatenate([np.zeros((len(starts), 1), np.int64), np.cumsum(near, axis=1)], axis=1)
    x = np.arange(0, w, tile)
    marked = counts[:, np.minimum(x + tile + reach, w)] > counts[:, np.maximum(x - reach, 0)]
    return np.nonzero(marked)


def _positions(t: np.ndarray, tile: int, halo: int, span: int = 1) -> np.ndarray:
    """(span tile + 2 halo, tiles) float32: the image row (or column) of each crop's rows (or columns)."""
    return ((t * tile - halo)[None, :] + np.arange(span * tile + 2 * halo)[:, None]).astype(np.float32)


def _count(at, r: int, n: int):
    """Pixels of an n-pixel axis in the (2r+1)-wide windows centred at `at` (<= 0: none)."""
    return (at + r).clip(max=n - 1) - (at - r).clip(min=0) + 1


def _gather(img: np.ndarray, ty: np.ndarray, tx: np.ndarray, tile: int, halo: int, span: int = 1) -> np.ndarray:
    """Crops of `tile` + 2 `halo` pixels around each tile (`span` tiles wide), zero outside the image:
    (tiles, S, S'[, C])."""
    h, w = img.shape[:2]
    s, sw = tile + 2 * halo, span * tile + 2 * halo
    out = np.zeros((len(ty), s, sw) + img.shape[2:], img.dtype)
    for k, (y, x) in enumerate(zip(ty * tile - halo, tx * tile - halo)):
        y0, x0, y1, x1 = max(y, 0), max(x, 0), min(y + s, h), min(x + sw, w)
        out[k, y0 - y : y1 - y, x0 - x : x1 - x] = img[y0:y1, x0:x1]
    return out


def _solve(m, eps: float):
    """(a0, a1, a2, b) from the window means of the `STATS`: a = (Sigma + eps I)^-1 cov_ip by LDL^T, vectorised over
    pixels: backward stable, so float32 is enough even where the three channels move together (the adjugate's
    determinant cancels there). Updated in place where a temporary is free (numpy or torch): the same values."""
    mp, m0, m1, m2 = m[0], m[1], m[2], m[3]
    v0, v1, v2 = m[4] - m0 * mp, m[5] - m1 * mp, m[6] - m2 * mp
    s00, s11, s22 = m[7] - m0 * m0 + eps, m[10] - m1 * m1 + eps, m[12] - m2 * m2 + eps
    s01, s02, s12 = m[8] - m0 * m1, m[9] - m0 * m2, m[11] - m1 * m2
    l10, l20 = s01 / s00, s02 / s00
    d1 = s11 - l10 * s01
    l21 = s12 - l20 * s01
    l21 /= d1
    d2 = s22 - l20 * s02
    d2 -= l21 * l21 * d1
    y1 = v1 - l10 * v0
    a2 = v2 - l20 * v0
    a2 -= l21 * y1
    a2 /= d2
    a1 = y1 / d1
    a1 -= l21 * a2
    a0 = v0 / s00
    a0 -= l10 * a1
    a0 -= l20 * a2
    b = mp - a0 * m0
    b -= a1 * m1
    b -= a2 * m2
    return a0, a1, a2, b


def _coefficients(p, g, rows, cols, size: Tuple[int, int], radius: int, eps: float, xp=np):
    """He et al.'s filter, q = mean(a) . I + mean(b) where in every window p ~ a . I + b (ridge `eps`): the
    window means of (a0, a1, a2, b), (4, H - 4 radius, W - 4 radius, B), for a batch of crops' inner parts.

    p: (H, W, B); g: (3, H, W, B), the guide; both zero outside the image of `size` (height, width),
    where `rows` (H, B) and `cols` (W, B) place the crops: windows count only pixels inside the image.
    """
    r = radius
    h, w = p.shape[:2]

    def mean(x, rows, cols):  # x: (channels, H, W, B)
        n = _count(rows, r, size[0]).clip(min=1)[:, None] * _count(cols, r, size[1]).clip(min=1)[None]
        return box_sum_valid(x, r, (1, 2), xp) / n

    channels = (p, *g)
    stats = [channels[i[0]] if len(i) == 1 else channels[i[0]] * channels[i[1]] for i in STATS]
    # the products centred too, on their mean over the crop's pixels inside the image: running sums of
    # deviations stay small, so their differences keep more of float32's digits
    inside = _count(rows, 0, size[0]).clip(min=0)[:, None] * _count(cols, 0, size[1]).clip(min=0)[None]
    stats = xp.stack(stats)
    mu = (stats * inside).sum((1, 2))[:, None, None] / inside.sum((0, 1))
    rows, cols = rows[r : h - r], cols[r : w - r]
    a0, a1, a2, b = _solve(mean((stats - mu) * inside, rows, cols) + mu, eps)
    inside = _count(rows, 0, size[0]).clip(min=0)[:, None] * _count(cols, 0, size[1]).clip(min=0)[None]
    return mean(xp.stack([a0, a1, a2, b]) * inside, rows[r : h - 3 * r], cols[r : w - 3 * r])  # inside only


def _filter_tiles(p, g, rows, cols, size: Tuple[int, int], radius: int, eps: float, xp=np):
    """He et al.'s filter on a batch of crops: `_coefficients` applied to the guide of the crops' inner parts."""
    mc, r = _coefficients(p, g, rows, cols, size, radius, eps, xp), radius
    y, x = slice(2 * r, p.shape[0] - 2 * r), slice(2 * r, p.shape[1] - 2 * r)
    return mc[0] * g[0][y, x] + mc[1] * g[1][y, x] + mc[2] * g[2][y, x] + mc[3]


def guided_filter(p: np.ndarray, guide: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """The filter over a whole image, in p's dtype: p (H, W), guide (H, W, 3)."""
    h, w = p.shape
    pad = 2 * radius
    at = [np.arange(-pad, n + pad, dtype=p.dtype)[:, None] for n in (h, w)]
    g = np.pad(np.moveaxis(guide, -1, 0), ((0, 0), (pad, pad), (pad, pad)))[..., None]
    return _filter_tiles(np.pad(p, pad)[..., None], g, *at, (h, w), radius, eps)[..., 0]


def _tile_counts(rows, cols, reach: int, size: Tuple[int, int], least: int) -> np.ndarray:
    """(tiles, rows, cols): `_count` over each crop's pixels, placed by `rows` (tiles, rows) and `cols`."""
    along_rows, along_cols = _count(rows, reach, size[0]).clip(min=least), _count(cols, reach, size[1]).clip(min=least)
    return along_rows[:, :, None] * along_cols[:, None]


def _weights(edge: np.ndarray, ty, tx, tile: int, band: int) -> np.ndarray:
    """(tiles, tile, tile): the filtered alpha's weight, 1 within band - band // 2 of the contour,
    fading to 0 over the band's outer half, so there is no seam where refinement stops."""
    grow, fade = band - band // 2, band // 2
    # pixel counts: exact in integers; uint16 (half float32's bytes) while a window's count fits in it
    counts = np.uint16 if (2 * grow + 1) ** 2 <= np.iinfo(np.uint16).max else np.uint32
    crops = _gather(edge, ty, tx, tile, band).astype(counts)
    rows, cols = _positions(ty, tile, fade).T, _positions(tx, tile, fade).T
    near = (box_sum_tiles(crops, grow) > 0) & (_tile_counts(rows, cols, 0, edge.shape, 0) > 0)
    rows, cols = rows[:, fade : rows.shape[1] - fade], cols[:, fade : cols.shape[1] - fade]
    return box_sum_tiles(near.astype(counts), fade) / _tile_counts(rows, cols, fade, edge.shape, 1)


def _filter_block(alpha, guide, ty, tx, tile: int, radius: int, eps: float, compressed: bool, span: int) -> np.ndarray:
    """(tiles, tile, span tile): the guided filter's alpha with numpy, 0..1, on a few crops of `span` tiles side
    by side from (ty, tx) (`_filtered`).

    The crops' pixels are each crop's (S, S') together, so a window sum's shifted slices are long contiguous runs
    (`box_sum_tiles`), and each statistic is summed right after it is formed, while it is in the cache."""
    (h, w), r = alpha.shape, radius
    halo, s, sw = 2 * r, tile + 4 * r, span * tile + 4 * r
    p = _gather(alpha, ty, tx, tile, halo, span)  # zero outside the image, as the guide
    g = np.ascontiguousarray(np.moveaxis(_gather(guide, ty, tx, tile, halo, span), -1, 0))
    g = g if compressed else compress_guide(g)
    y0, x0 = ty * tile - halo, tx * tile - halo
    whole = y0.min() >= 0 and x0.min() >= 0 and y0.max() + s <= h and x0.max() + sw <= w
    if whole:  # crops inside the image: every window is whole
        n, count = s * sw, np.float32((2 * r + 1) ** 2)
        inside = count_a = count_b = None
    else:  # windows count only the pixels inside the image
        rows, cols = _positions(ty, tile, halo).T, _positions(tx, tile, halo, span).T
        inside = _tile_counts(rows, cols, 0, (h, w), 0)
        n = inside.sum((1, 2))
        rows, cols = rows[:, r : s - r], cols[:, r : sw - r]
        count_a, inside_a = _tile_counts(rows, cols, r, (h, w), 1), _tile_counts(rows, cols, 0, (h, w), 0)
        rows, cols = rows[:, r : s - 3 * r], cols[:, r : sw - 3 * r]
        count_b = _tile_counts(rows, cols, r, (h, w), 1)
    # centred on each crop's mean: the filter does not change, and float32 keeps the window variances
    mp, mg = p.sum((1, 2)) / n, g.sum((2, 3)) / n
    p -= mp[:, None, None]
    g -= mg[:, :, None, None]
    if not whole:
        p *= inside
        g *= inside
    channels = (p, *g)
    m = []
    for i in STATS:  # the division leaves contiguous means, which the solve reads faster than the sums' strided view
        x = channels[i[0]] if len(i) == 1 else channels[i[0]] * channels[i[1]]
        m.append(box_sum_tiles(x, r) / (count if whole else count_a))
    mc = []
    for c in _solve(m, eps):
        mc.append(box_sum_tiles(c if whole else c * inside_a, r) / (count if whole else count_b))
    y, x = slice(halo, s - halo), slice(halo, sw - halo)
    q = mc[0] * g[0][:, y, x] + mc[1] * g[1][:, y, x] + mc[2] * g[2][:, y, x] + mc[3]
    q += mp[:, None, None]
    return q.clip(0.0, 1.0)


def _runs(ty: np.ndarray, tx: np.ndarray, longest: int):
    """[(crops, span) index arrays]: the tiles in runs of up to `longest` side by side along each row of tiles,
    grouped by length. A run's crop shares the halos between its tiles (a pair at r = 8: 1.67 crops' pixels)."""
    order = np.lexsort((tx, ty))
    runs, k = {}, 0
    while k < len(order):
        n = 1
        while (
            n < longest
            and k + n < len(order)
            and ty[order[k + n]] == ty[order[k]]
            and tx[order[k + n]] == tx[order[k]] + n
        ):
            n += 1
        runs.setdefault(n, []).append(order[k : k + n])
        k += n
    return [np.array(r, int) for _, r in sorted(runs.items())]


def _filtered(alpha, guide, ty, tx, tile: int, radius: int, eps: float, device, compressed: bool = False):
    """(tiles, tile, tile): the guided filter's alpha on each tile, 0..1, computed with numpy or on `device`;
    `compressed`: the guide has been through `compress_guide` already."""
    halo = 2 * radius
    if device is None:  # a few crops at a time, of one or two tiles; those crossing the image's border last
        (h, w), out = alpha.shape, np.empty((len(ty), tile, tile), np.float32)
        for crops in _runs(ty, tx, RUN):
            span = crops.shape[1]
            y0, x0, s, sw = (
                ty[crops[:, 0]] * tile - halo,
                tx[crops[:, 0]] * tile - halo,
                tile + 2 * halo,
                span * tile + 2 * halo,
            )
            crops = crops[np.argsort((y0 < 0) | (x0 < 0) | (y0 + s > h) | (x0 + sw > w), kind="stable")]
            step = max(1, BLOCK_PIXELS // (s * sw))
            for k in range(0, len(crops), step):
                at = crops[k : k + step]
                q = _filter_block(alpha, guide, ty[at[:, 0]], tx[at[:, 0]], tile, radius, eps, compressed, span)
                for j in range(span):
                    out[at[:, j]] = q[:, :, j * tile : (j + 1) * tile]
        return out
    import torch

    p, g = _gather(alpha, ty, tx, tile, halo), _gather(guide, ty, tx, tile, halo)
    rows, cols = _positions(ty, tile, halo), _positions(tx, tile, halo)
    p, g, rows, cols = (torch.from_numpy(a).to(device, non_blocking=True) for a in (p, g, rows, cols))
    p, g = p.permute(1, 2, 0).contiguous(), g.permute(3, 1, 2, 0).contiguous()
    g = g if compressed else compress_guide(g, torch)
    # centred on each crop's mean: the filter does not change, and float32 keeps the window variances
    inside = _count(rows, 0, alpha.shape[0]).clip(min=0)[:, None] * _count(cols, 0, alpha.shape[1]).clip(min=0)[None]
    n = inside.sum((0, 1))
    mp, mg = (p * inside).sum((0, 1)) / n, (g * inside).sum((1, 2))[:, None, None] / n
    p, g = (p - mp) * inside, (g - mg) * inside
    q = (_filter_tiles(p, g, rows, cols, alpha.shape, radius, eps, torch) + mp).clip(0.0, 1.0)
    return q.permute(2, 0, 1).cpu().numpy()


def subsampling(radius: int) -> int:
    """The Fast Guided Filter's step for this radius: the largest divisor s of `radius` that leaves radius / s
    >= FAST_RADIUS (1: the exact filter). The divisor keeps the windows exactly as wide as the exact filter's."""
    return max((s for s in range(1, radius + 1) if radius % s == 0 and radius // s >= FAST_RADIUS), default=1)


def _block_mean(img: np.ndarray, s: int) -> np.ndarray:
    """Means of s x s blocks from the top-left; a partial block at the bottom or right is the mean of its pixels."""
    h, w = img.shape[:2]
    hl, wl = -(-h // s), -(-w // s)
    pad = [(0, hl * s - h), (0, wl * s - w)] + [(0, 0)] * (img.ndim - 2)
    padded = np.pad(img, pad)
    rows = sum(padded[i::s] for i in range(s))  # whole-row adds: numpy's strided sum((1, 3)) is ~10x slower
    sums = sum(rows[:, j::s] for j in range(s))
    n = np.full((hl, wl), s * s, np.float32)
    n[-1] = s * (h - (hl - 1) * s)
    n[:, -1] *= (w - (wl - 1) * s) / s
    return sums / (n if img.ndim == 2 else n[..., None])


def _fast_coefficients(alpha, guide, box, s: int, radius: int, eps: float, kept=None) -> np.ndarray:
    """(4, h, w): the filter's mean coefficients (a0, a1, a2, b) over `box` (y0, y1, x0, x1; y0 and x0 multiples
    of s) computed on its s x s block means with radius / s (He & Sun 2015, the Fast Guided Filter): q at a
    pixel is then the coefficients interpolated there . its compressed guide + b. `kept`: a `Guide` whose block
    means over the whole frame are the box's (the box ends on a whole block or at the frame's edge)."""
    y0, y1, x0, x1 = box
    p = _block_mean(alpha[y0:y1, x0:x1], s)
    if kept is not None:
        g = np.moveaxis(kept.blocks(s)[y0 // s : -(-y1 // s), x0 // s : -(-x1 // s)], -1, 0)
    else:
        g = np.moveaxis(_block_mean(compress_guide(guide[y0:y1, x0:x1]), s), -1, 0)
    mp, mg = p.mean(), g.mean((1, 2))  # centred, as the exact filter's crops are (float32's digits)
    r, (h, w) = radius // s, p.shape
    at = [np.arange(-2 * r, n + 2 * r, dtype=np.float32)[:, None] for n in (h, w)]
    g = np.pad(g - mg[:, None, None], ((0, 0), (2 * r, 2 * r), (2 * r, 2 * r)))[..., None]
    mc = _coefficients(np.pad(p - mp, 2 * r)[..., None], g, *at, (h, w), r, eps)[..., 0]
    mc[3] += mp - (mc[:3] * mg[:, None, None]).sum(0)  # b for the uncentred guide
    return mc


def _upsample_tiles(coefficients, s: int, my, mx, tile: int) -> np.ndarray:
    """(4, tiles, tile, tile): the coefficients (4, h, w) interpolated by torch's bilinear rule (`linear_taps`)
    at the pixels of tiles whose first pixel is at cell (my, mx) of the box (tile a multiple of s). A pixel at
    phase k of its cell sits (k + 0.5) / s - 0.5 cells from it, the same in every cell, so each phase is two
    whole-slice products; edge cells repeated outside the map are the rule's clamp."""
    n = tile // s
    padded = np.pad(coefficients, ((0, 0), (1, n + 2), (1, n + 2)), mode="edge")
    cells = padded[:, (my[:, None] + np.arange(n + 2))[:, :, None], (mx[:, None] + np.arange(n + 2))[:, None, :]]

    def along(x, axis):  # (..., n + 2, ...) cells -> (..., tile, ...) pixels along `axis`
        out = np.empty(x.shape[:axis] + (n, s) + x.shape[axis + 1 :], x.dtype)
        for k in range(s):
            d = (k + 0.5) / s - 0.5
            lo, f = (0, 1 + d) if d < 0 else (1, d)
            a, b = [slice(None)] * x.ndim, [slice(None)] * x.ndim
            a[axis], b[axis] = slice(lo, lo + n), slice(lo + 1, lo + 1 + n)
            at = [slice(None)] * out.ndim
            at[axis + 1] = k
            out[tuple(at)] = x[tuple(a)] * np.float32(1 - f) + x[tuple(b)] * np.float32(f)
        return out.reshape(x.shape[:axis] + (tile,) + x.shape[axis + 1 :])

    return along(along(cells, 2), 3)


def _fast_filtered(coefficients, box, s: int, guide, ty, tx, tile: int, compressed: bool = False) -> np.ndarray:
    """(tiles, tile, tile): the Fast Guided Filter's alpha on each tile, 0..1."""
    y0, _, x0, _ = box
    c = _upsample_tiles(coefficients, s, (ty * tile - y0) // s, (tx * tile - x0) // s, tile)
    g = _gather(guide, ty, tx, tile, 0)  # (tiles, tile, tile, 3)
    g = g if compressed else compress_guide(g)
    q = c[0] * g[..., 0] + c[1] * g[..., 1] + c[2] * g[..., 2] + c[3]
    return q.clip(0.0, 1.0)


class Guide:
    """A plate's RGB as the soft edge sees it (`compress_guide`), with what depends on the plate alone kept for
    the next matte against the same plate (a preview's next click on a frame): the whole frame compressed once
    (a plate's size of memory), and its block means for the Fast Guided Filter. The same results as the RGB."""

    def __init__(self, rgb: np.ndarray):
        self.rgb, self.shape = rgb, np.shape(rgb)
        self._compressed, self._blocks = None, {}

    @property
    def compressed(self) -> np.ndarray:
        if self._compressed is None:
            self._compressed = compress_guide(np.asarray(self.rgb, np.float32))
        return self._compressed

    def blocks(self, s: int) -> np.ndarray:
        if s not in self._blocks:
            self._blocks[s] = _block_mean(self.compressed, s)
        return self._blocks[s]


def refine_alpha(
    alpha: np.ndarray,
    guide,
    radius: int = 8,
    eps: float = 1e-4,
    band: int = 8,
    device=None,
    fast: bool = True,
) -> np.ndarray:
    """Alpha (H, W) float32 0..1 with its edges fitted to `guide`, the plate's RGB over the same window (or a
    `Guide` of it, kept between mattes on the same plate).

    radius: the filter's window half-size in pixels. About one model cell (plate width / logit grid
    width, 8 at 2K), the distance by which the model's edge may be off, so each window spans it;
    eps: how strongly flat plate areas flatten alpha (in squared compressed-guide units);
    band: half-width in pixels of the strip around the 0.5 contour that is filtered (its outer half
    fades back to the solid matte).
    device: a torch device (e.g. "cuda") to filter there instead of with numpy.
    fast: on the CPU, at radii of 2 FAST_RADIUS and more, the Fast Guided Filter (`subsampling`) instead of the
    exact one (tests/test_refine_tiles.py states the difference).
    """
    alpha = np.asarray(alpha, np.float32)
    kept = guide if isinstance(guide, Guide) else None
    shape = kept.shape if kept is not None else np.shape(guide)
    if alpha.ndim != 2 or shape != alpha.shape + (3,):
        raise MatteBridgeError(f"refine: alpha {alpha.shape} and guide {shape} must be (H, W) and (H, W, 3)")
    guide = kept.compressed if kept is not None else np.asarray(guide, np.float32)
    compressed = kept is not None
    inside = alpha > 0.5
    out = inside.astype(np.float32)
    edge = contour(inside)
    tile = max(TILE, band, 4 * radius)  # a tile at least twice its halo: (t + 4r)^2 / t^2 <= 4 times the work
    ty, tx = edge_tiles(edge, band, tile)
    h, w = alpha.shape
    chunk = CHUNK_CPU if device is None else CHUNK_DEVICE
    s = subsampling(radius) if device is None and fast else 1
    s = s if tile % s == 0 else 1  # tiles start on whole cells (s divides 4 radius; a wider band may not)
    if s > 1 and len(ty):  # the band's tiles and the coefficients' reach (2 radius), from a multiple of s
        y0, x0 = max(ty.min() * tile - 2 * radius, 0) // s * s, max(tx.min() * tile - 2 * radius, 0) // s * s
        box = (y0, min((ty.max() + 1) * tile + 2 * radius, h), x0, min((tx.max() + 1) * tile + 2 * radius, w))
        coefficients = _fast_coefficients(alpha, guide, box, s, radius, eps, kept)
    for start in range(0, len(ty), chunk):
        cy, cx = ty[start : start + chunk], tx[start : start + chunk]
        weight = _weights(edge, cy, cx, tile, band)
        if s > 1:
            q = _fast_filtered(coefficients, box, s, guide, cy, cx, tile, compressed)
        else:
            q = _filtered(alpha, guide, cy, cx, tile, radius, eps, device, compressed)
        for k, (y, x) in enumerate(zip(cy * tile, cx * tile)):
            wk, qk = weight[k, : h - y, : w - x], q[k, : h - y, : w - x]
            hard = out[y : y + tile, x : x + tile]
            out[y : y + tile, x : x + tile] = wk * qk + (1 - wk) * hard
    return out
