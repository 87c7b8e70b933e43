"""Foreground colour for cut-outs: inside a soft edge a pixel is alpha x F + (1 - alpha) x B, so plate x
alpha keeps (1 - alpha) x B of background spill in every strand of hair. F is estimated instead, by
pymatting's multilevel foreground estimation (Germer et al. 2020, `estimate_foreground_ml`; the `matting`
extra), in the plate's own linear colour space where the compositing equation holds.

Only the tiles holding fractional alpha are estimated (the same overlapping grid and partition-of-unity
cross-fade as core/matte/matting.py), so a 4K frame costs what its edges cost and memory stays bounded.
Where alpha is 1 the foreground is the plate; where it is 0 it does not matter (premultiplied: 0).
"""

from __future__ import annotations

import numpy as np

from mattebridge.core.errors import MatteBridgeError
from mattebridge.core.matte.matting import OVERLAP, TILE, band_tiles

SOLID = 1.0 / 1024  # alpha within this of 0 or 1 is solid (below half a float16 step at 1.0)


def _estimator():
    try:
        from pymatting import estimate_foreground_ml
    except ImportError:
        raise MatteBridgeError(
            "foreground colour needs pymatting; install the matting extra: pip install 'mattebridge[matting]'"
        ) from None
    return estimate_foreground_ml


def estimate_foreground(plate: np.ndarray, alpha: np.ndarray, tile: int = TILE, overlap: int = OVERLAP):
    """(H, W, 3) float32 foreground colour: estimated where 0 < alpha < 1, the plate elsewhere."""
    alpha = np.asarray(alpha, np.float32)
    if plate.shape != alpha.shape + (3,):
        raise MatteBridgeError(f"foreground: plate {plate.shape} and alpha {alpha.shape} must be (H, W, 3), (H, W)")
    fg = np.asarray(plate, np.float32).copy()
    soft = (alpha > SOLID) & (alpha < 1 - SOLID)
    if not soft.any():
        return fg
    estimate = _estimator()
    th, tw, ys, xs, wy, wx, run = band_tiles(soft, tile, overlap)
    fg[soft] = 0.0  # the sum of the tiles' weighted estimates
    for i, j in run:
        y, x = ys[i], xs[j]
        crop = np.clip(plate[y : y + th, x : x + tw], 0.0, None).astype(np.float64)
        # pymatting clamps colours to 0..1; the compositing equation is linear, so scale highlights into range
        scale = max(1.0, float(crop.max()))
        crop_f = estimate(crop / scale, alpha[y : y + th, x : x + tw].astype(np.float64)).astype(np.float32) * scale
        weight = (wy[i][:, None] * wx[j][None])[..., None]
        fg[y : y + th, x : x + tw] += np.where(soft[y : y + th, x : x + tw, None], weight * crop_f, 0.0)
    return fg


def premultiplied(plate: np.ndarray, alpha: np.ndarray, tile: int = TILE) -> np.ndarray:
    """(H, W, 3): the estimated foreground colour x alpha (what a comp's Merge over expects)."""
    return estimate_foreground(plate, alpha, tile) * np.asarray(alpha, np.float32)[..., None]
