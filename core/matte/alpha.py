"""Model logits -> alpha over a frame's data window (docs/architecture.md §2, alpha post)."""

from __future__ import annotations

import numpy as np

from mattebridge.core.image.plate import Geometry
from mattebridge.core.image.resample import upsample_to_window


def logits_over_data_window(logits: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Upsample (L, L) logits covering the display window to every pixel of the data window."""
    dx, dy, dw, dh = geometry.display
    x, y, w, h = geometry.data
    return upsample_to_window(logits, (dw, dh), (x - dx, y - dy, w, h))


def alpha_from_logits(logits: np.ndarray, geometry: Geometry, edge: str = "raw", guide=None, device=None) -> np.ndarray:
    """Alpha (data height, data width) float32 in 0..1.

    `raw`: sigmoid of the logits; `hard`: logits > 0; `soft`: raw refined against `guide`, the plate's
    RGB over the data window (or a refine.Guide of it), by a guided filter whose reach is one model-output
    cell. `device`: a CUDA device to run the filter on (None: numpy on the CPU).
    """
    up = logits_over_data_window(np.asarray(logits, np.float32), geometry)  # never float64 at full resolution
    if edge == "hard":
        return (up > 0).astype(np.float32)
    alpha = (1.0 / (1.0 + np.exp(-np.clip(up, -60, 60)))).astype(np.float32)
    if edge == "soft":
        from mattebridge.core.matte.refine import refine_alpha

        cell = max(1, round(max(geometry.display[2], geometry.display[3]) / logits.shape[0]))
        alpha = refine_alpha(alpha, guide, radius=cell, band=cell, device=device)
    return alpha


def matted_alpha(logits, geometry: Geometry, plate_rgb, display, predict, previous=None, tile=512, device=None):
    """`--edge matte`: (alpha, BandStats). The sigmoid of the logits outside the trimap's unknown band, a
    matting model's prediction inside it at full plate resolution (core/matte/trimap.py, matting.py).

    previous: the object's logits on the frame before in the pass (None: first frame), for the motion
    widening; display: plate RGB -> the tracker's display view; predict: the model (matting.matte_band).
    """
    from mattebridge.core.matte.matting import matte_band
    from mattebridge.core.matte.trimap import cell_pixels, motion_cells, trimap

    logits = np.asarray(logits, np.float32)
    up = logits_over_data_window(logits, geometry)
    cell = cell_pixels(geometry.display_size, logits.shape[0])
    moved = motion_cells(logits, None if previous is None else np.asarray(previous, np.float32))
    motion = logits_over_data_window(moved * cell, geometry) if moved.any() else None
    base = (1.0 / (1.0 + np.exp(-np.clip(up, -60, 60)))).astype(np.float32)
    return matte_band(base, trimap(up, cell, motion), plate_rgb, display, predict, tile=tile, device=device)
