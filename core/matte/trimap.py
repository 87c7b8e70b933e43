"""`--edge matte`, step 1: the tracked matte as a trimap (definite background 0, definite foreground 1,
unknown 0.5) whose unknown band a matting model then fills at full plate resolution.

The band is where the model is unsure, widened by what it cannot see:
- uncertainty: every pixel whose upsampled logit is within UNCERTAIN of 0 (its sigmoid further than 1/255
  from 0 and 1). A confident model has a steep logit ramp and a thin band; an unsure one a wide band.
- resolution: the model decodes at 1/4 of its input, so a logit cell covers `cell` plate pixels (8 at 2K
  from a 1024 model, 16 at 4K): the true edge may be anywhere in the cells the ramp crosses, and a strand
  too faint to tip its cell's logit lies in a neighbour of an unsure cell, so the band grows by two cells
  on each side (measured on the synthetic hair of bench/matting_quality.py: the faintest tips lie up to
  10.8 px, 1.35 cells of 8 px, outside the unsure logits; the box dilation's reach along a diagonal is
  what makes 1.5 cells too few there).
- motion: a fast edge is smeared over the distance it moved while the shutter was open, while the tracker
  still draws it sharp. The displacement is estimated per logit cell from two consecutive frames as
  |change of alpha| / |gradient of alpha| (the normal flow of the alpha), and the band grows by it there.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from mattebridge.core.matte.boxfilter import box_sum

UNCERTAIN = math.log(254.0)  # |logit| below this: sigmoid not within 1/255 of 0 or 1
MAX_MOTION_CELLS = 8  # cap on the motion widening, in logit cells (a wild estimate must not flood the frame)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))).astype(np.float32)


def cell_pixels(display_size, grid: int) -> int:
    """Plate pixels per logit cell: the long side of the display window over the logit grid."""
    return max(1, round(max(display_size) / grid))


def motion_cells(logits: np.ndarray, previous: Optional[np.ndarray]) -> np.ndarray:
    """(L, L) float32: how far, in logit cells, the edge moved since `previous` (None: not moving).

    Normal flow of alpha: a = sigmoid(logits); the edge moved by |a_t - a_{t-1}| / |grad a| where the edge
    is (|grad a| > 0.05 per cell), spread to the cells around it (3x3 max) so both sides of an edge widen. An
    edge that jumped further than its ramp is wide is underestimated, but never below the ramp's width.
    """
    if previous is None or previous.shape != logits.shape:
        return np.zeros(logits.shape, np.float32)
    a, b = _sigmoid(logits), _sigmoid(previous)
    gy, gx = np.gradient(0.5 * (a + b))
    grad = np.hypot(gx, gy)
    moved = np.where(grad > 0.05, np.abs(a - b) / np.maximum(grad, 0.05), 0.0)
    out = moved.copy()
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            out = np.maximum(out, np.roll(np.roll(moved, dy, 0), dx, 1))
    return np.clip(out, 0, MAX_MOTION_CELLS).astype(np.float32)


def trimap(up_logits: np.ndarray, cell: int, motion: Optional[np.ndarray] = None) -> np.ndarray:
    """(H, W) float32 in {0, 0.5, 1} from logits upsampled to the plate (H, W).

    cell: plate pixels per logit cell; motion: (H, W) motion in plate pixels (motion_cells x cell, upsampled),
    or None. The unknown set is {|logit| < UNCERTAIN} dilated by two cells plus the local motion; the local
    radius is rounded to whole cells so a few box dilations cover any motion field.
    """
    up = np.asarray(up_logits, np.float32)
    unsure = np.abs(up) < UNCERTAIN
    base = max(1, 2 * cell)
    unknown = _dilate(unsure, base)
    if motion is not None and np.any(motion > 0):
        steps = np.rint(np.asarray(motion, np.float32) / cell).astype(np.int32)  # extra cells of radius a pixel
        for k in range(1, int(steps.max()) + 1):  # grown from where the motion is, as far as it moved
            unknown |= _dilate(unsure & (steps >= k), base + k * cell)
    out = np.where(up > 0, np.float32(1), np.float32(0))
    out[unknown] = 0.5
    return out


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    return box_sum(mask.astype(np.float32), r) > 0.5
