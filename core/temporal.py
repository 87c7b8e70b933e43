"""Temporal stability: calm frame-to-frame chatter in still regions without smearing moving edges.

A per-pixel recursive blend with the previous output, gated by how much the pixel changed: small
changes (model noise on a still edge) are averaged away; large ones (an edge moving through the
pixel) pass through at once, so a moving edge is never dragged behind. Feed frames in processing
order, one smoother per object, and reset() between passes (a backward pass starts afresh).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .errors import MatteBridgeError


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


class TemporalSmoother:
    """out_t = w * out_{t-1} + (1 - w) * in_t, with w = blend * max(0, 1 - |change| / threshold)^2.

    `change` is measured in alpha (0..1) even for logits (`logits=True` gates on their sigmoid):
    interior logits may swing by several units without any visible change, and must not block the
    blend. blend 0.6 halves the noise's standard deviation on a still pixel; threshold 0.25 lets
    an edge moving a pixel or more per frame through untouched.
    """

    def __init__(self, blend: float = 0.6, threshold: float = 0.25, logits: bool = False):
        if not 0.0 <= blend < 1.0:
            raise MatteBridgeError(f"temporal smoother: blend must be in [0, 1) (got {blend})")
        if threshold <= 0:
            raise MatteBridgeError(f"temporal smoother: threshold must be > 0 (got {threshold})")
        self.blend, self.threshold, self.logits = float(blend), float(threshold), logits
        self._prev: Optional[np.ndarray] = None

    def reset(self) -> None:
        self._prev = None

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        x = np.asarray(frame, np.float32)
        prev = self._prev
        if prev is None:
            self._prev = x.copy()
            return x
        if prev.shape != x.shape:
            raise MatteBridgeError(f"temporal smoother: frame shape {x.shape} differs from the previous {prev.shape}; reset() between shots")
        change = np.abs(_sigmoid(x) - _sigmoid(prev)) if self.logits else np.abs(x - prev)
        w = self.blend * np.square(np.clip(1.0 - change / self.threshold, 0.0, 1.0))
        out = (w * prev + (1.0 - w) * x).astype(np.float32)
        self._prev = out
        return out
