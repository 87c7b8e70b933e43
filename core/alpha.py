"""Model logits -> alpha over a frame's data window (DESIGN.md §2, alpha post)."""
from __future__ import annotations

import numpy as np

from .plate import Geometry
from .resample import upsample_to_window

EDGE_MODES = ("raw", "hard")


def logits_over_data_window(logits: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Upsample (L, L) logits covering the display window to every pixel of the data window."""
    dx, dy, dw, dh = geometry.display
    x, y, w, h = geometry.data
    return upsample_to_window(logits, (dw, dh), (x - dx, y - dy, w, h))


def alpha_from_logits(logits: np.ndarray, geometry: Geometry, edge: str = "raw") -> np.ndarray:
    """Alpha (data height, data width) float32 in 0..1. `raw`: sigmoid; `hard`: logits > 0."""
    up = logits_over_data_window(logits, geometry)
    if edge == "hard":
        return (up > 0).astype(np.float32)
    return (1.0 / (1.0 + np.exp(-np.clip(up, -60, 60)))).astype(np.float32)
