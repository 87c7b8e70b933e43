"""`--edge matte`, step 2: a matting model predicts alpha inside the trimap's unknown band at full plate
resolution, in overlapping tiles, batched on the device, with bounded memory.

Tiles: `tile` px squares on a grid with `overlap` px between neighbours (the last row and column are moved
in to end on the image's edge). Only tiles holding an unknown pixel run. Each tile's result is weighted by a
separable ramp (across the overlap towards a neighbour, flat towards the image's edge) normalised so the
weights of all tiles covering a pixel sum to 1: every tile covering an unknown pixel holds it and so runs,
hence unknown pixels are a seamless weighted blend and the frame needs no weight plane, only its output.

Seam with the rest of the matte: within `fade` px of the band's edge the prediction is blended with the
matte the band was cut from (weight 0 at the edge, 1 `fade` px in), so the matte stays continuous there. The
trimap grows the band by two logit cells beyond where the tracker is unsure, so the fade lies where that
matte is already within 1/255 of 0 or 1.

Memory: the output plane plus one batch of tiles (`batch` x 4 x tile^2 float32 and the model's activations),
whatever the frame's size; `tile` sets it (`--matte-tile`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Sequence, Tuple

import numpy as np

from mattebridge.core.errors import MatteBridgeError
from mattebridge.core.matte.boxfilter import box_sum_valid

TILE = 512  # px: ViTMatte's published models were trained on 512 crops; 4 x 512^2 x 4 x 4 B = 16 MB of input
OVERLAP = 64  # px between neighbouring tiles: a model's context at the seam, and the cross-fade's length
BATCH = 4  # tiles per forward pass
FADE = 4  # px over which the band's prediction meets the tracked matte


@dataclass
class BandStats:
    tiles: int = 0  # tiles on the grid
    run: int = 0  # tiles holding unknown pixels: the ones the model saw


def memory_budget(height: int, width: int, tile: int = TILE, batch: int = BATCH) -> int:
    """Bytes the pass allocates besides its inputs and the model's own activations: the output plane and the
    band mask (5 B a pixel), and per tile in a batch 48 float32 planes (display RGB, trimap, their tensors,
    the alpha, the blend's temporaries and the allocator's slack: 188 MiB measured at 4K, 512 px, batch 4)."""
    return 5 * height * width + 48 * 4 * batch * tile * tile


def tile_starts(n: int, tile: int, overlap: int) -> List[int]:
    """Starts of `tile`-long spans covering 0..n with at least `overlap` between neighbours."""
    if n <= tile:
        return [0]
    return list(range(0, n - tile, tile - overlap)) + [n - tile]


def axis_weights(n: int, starts: Sequence[int], size: int, overlap: int) -> List[np.ndarray]:
    """Per span, its (size,) weights summing to 1 along 0..n: towards a neighbour, 0 over the outer quarter of
    the overlap (a model's output at a tile's cut edge lacks context: the neighbour has it), then a linear ramp
    to 1 over the overlap's middle half."""
    x = np.arange(size, dtype=np.float64) + 0.5
    margin = overlap // 4
    raw = []
    for i in range(len(starts)):
        w = np.ones(size)
        if i > 0:
            w = np.minimum(w, np.clip((x - margin) / (overlap - 2 * margin), 0, 1))
        if i < len(starts) - 1:
            w = np.minimum(w, np.clip((size - x - margin) / (overlap - 2 * margin), 0, 1))
        raw.append(w)
    total = np.zeros(n)
    for s, w in zip(starts, raw):
        total[s : s + size] += w
    return [(w / total[s : s + size]).astype(np.float32) for s, w in zip(starts, raw)]


def band_tiles(unknown: np.ndarray, tile: int, overlap: int):
    """(tile height, tile width, row starts, column starts, row weights, column weights, [(i, j) to run])."""
    h, w = unknown.shape
    th, tw = min(tile, h), min(tile, w)
    ys, xs = tile_starts(h, th, overlap), tile_starts(w, tw, overlap)
    wy, wx = axis_weights(h, ys, th, overlap), axis_weights(w, xs, tw, overlap)
    run = [(i, j) for i, y in enumerate(ys) for j, x in enumerate(xs) if unknown[y : y + th, x : x + tw].any()]
    return th, tw, ys, xs, wy, wx, run


def _fade(unknown: np.ndarray, y: int, x: int, th: int, tw: int, fade: int) -> np.ndarray:
    """(th, tw): 0 at the band's edge rising to 1 `fade` px in (the image's own edge does not count)."""
    if fade <= 0:
        return np.ones((th, tw), np.float32)
    h, w = unknown.shape
    y0, x0, y1, x1 = max(y - fade, 0), max(x - fade, 0), min(y + th + fade, h), min(x + tw + fade, w)
    crop = unknown[y0:y1, x0:x1].astype(np.float32)
    crop = np.pad(crop, ((y0 - (y - fade), (y + th + fade) - y1), (x0 - (x - fade), (x + tw + fade) - x1)), "edge")
    share = box_sum_valid(crop, fade) / (2 * fade + 1) ** 2
    return np.clip(2.0 * share - 1.0, 0.0, 1.0).astype(np.float32)


def matte_band(
    base: np.ndarray,
    tri: np.ndarray,
    plate: np.ndarray,
    display: Callable[[np.ndarray], np.ndarray],
    predict: Callable,
    tile: int = TILE,
    overlap: int = OVERLAP,
    batch: int = BATCH,
    fade: int = FADE,
    device=None,
) -> Tuple[np.ndarray, BandStats]:
    """Alpha (H, W) float32: `base` (the tracked matte) with the trimap's unknown band predicted by `predict`.

    tri: (H, W) trimap (0, 0.5 unknown, 1); plate: (H, W, 3) scene-linear RGB; display: RGB -> the display
    view the model was trained on (run on the tiles only); predict(rgb, tri) -> alpha: torch (B, 3, t, t)
    display RGB 0..1 and (B, 1, t, t) trimap on `device` -> (B, t, t) float32 alpha.
    """
    import torch

    h, w = base.shape
    if tri.shape != (h, w) or plate.shape[:2] != (h, w):
        raise MatteBridgeError(f"matting: trimap {tri.shape} and plate {plate.shape} must match the matte {(h, w)}")
    if tile < 2 * overlap + 32:
        raise MatteBridgeError(f"matte tile: {tile} px is too small for a {overlap} px overlap")
    unknown = tri == 0.5
    th, tw, ys, xs, wy, wx, run = band_tiles(unknown, tile, overlap)
    stats = BandStats(len(ys) * len(xs), len(run))
    base = np.asarray(base, np.float32)
    out = base.copy()
    out[unknown] = 0.0  # the band is the sum of its tiles' weighted predictions
    device = torch.device(device or "cpu")
    for start in range(0, len(run), batch):
        chunk = run[start : start + batch]
        rgb = np.stack([display(plate[ys[i] : ys[i] + th, xs[j] : xs[j] + tw]) for i, j in chunk])
        tris = np.stack([tri[ys[i] : ys[i] + th, xs[j] : xs[j] + tw] for i, j in chunk])
        with torch.inference_mode():
            t_rgb = torch.from_numpy(np.clip(rgb, 0.0, 1.0)).to(device).permute(0, 3, 1, 2)
            t_tri = torch.from_numpy(tris).to(device)[:, None]
            alpha = predict(t_rgb, t_tri).float().clamp(0.0, 1.0).cpu().numpy()
        del rgb, t_rgb, t_tri
        for k, (i, j) in enumerate(chunk):
            y, x = ys[i], xs[j]
            band = unknown[y : y + th, x : x + tw]
            b = base[y : y + th, x : x + tw]
            blended = b + _fade(unknown, y, x, th, tw, fade) * (alpha[k] - b)
            out[y : y + th, x : x + tw] += np.where(band, wy[i][:, None] * wx[j][None] * blended, 0.0)
    return out, stats
