"""Edge refinement for `--edge soft`: a colour guided filter (He et al., TPAMI 2013) snaps the model's
blurry, stair-stepped alpha (upsampled from 1/4 of the model's input) to the plate's own edges.

Only a narrow band around the alpha's 0.5 contour is filtered; elsewhere the matte is solid 0 or 1,
so the filter cannot bleed plate texture into the core or the background. Box filters are running
sums, so the cost is O(pixels) whatever the radius. numpy on CPU; torch when a device is given.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from mattebridge.core.errors import MatteBridgeError
from mattebridge.core.matte.boxfilter import box_mean, box_sum, dilate


def compress_guide(guide: np.ndarray) -> np.ndarray:
    """Scene-linear RGB -> a log-like 0..~3 scale, so a highlight does not swamp the edge contrast
    that lives in mid-tones and shadows (1.0 -> 1.0, 0.18 -> 0.41, 100 -> 3.0)."""
    return (np.log1p(8.0 * np.maximum(guide, 0.0)) / np.log1p(8.0)).astype(np.float32)


def edge_band(alpha: np.ndarray, band: int) -> np.ndarray:
    """Pixels within `band` pixels (square neighbourhood) of where alpha crosses 0.5."""
    inside = alpha > 0.5
    edge = np.zeros_like(inside)
    edge[:, 1:] |= inside[:, 1:] != inside[:, :-1]
    edge[:, :-1] |= inside[:, 1:] != inside[:, :-1]
    edge[1:, :] |= inside[1:, :] != inside[:-1, :]
    edge[:-1, :] |= inside[1:, :] != inside[:-1, :]
    return dilate(edge, band)


def guided_filter(p, guide, radius: int, eps: float, xp=np):
    """He et al.'s guided filter with a 3-channel guide: q = mean(a) . I + mean(b), where in every
    window p ~ a . I + b (ridge `eps`). p: (H, W); guide: (H, W, 3); same array type as `xp`."""
    n = box_sum(xp.ones_like(p), radius, xp)

    def mean(x):
        return box_sum(x, radius, xp) / (n if x.ndim == 2 else n[..., None])

    mi, mp = mean(guide), mean(p)
    cov_ip = mean(guide * p[..., None]) - mi * mp[..., None]
    s = {}
    for i in range(3):  # the six distinct entries of each window's colour covariance, plus eps
        for j in range(i, 3):
            s[i, j] = mean(guide[..., i] * guide[..., j]) - mi[..., i] * mi[..., j] + (eps if i == j else 0.0)
    # a = (Sigma + eps I)^-1 cov_ip, by the symmetric 3x3 adjugate (vectorised over pixels)
    c00 = s[1, 1] * s[2, 2] - s[1, 2] ** 2
    c01 = s[0, 2] * s[1, 2] - s[0, 1] * s[2, 2]
    c02 = s[0, 1] * s[1, 2] - s[0, 2] * s[1, 1]
    c11 = s[0, 0] * s[2, 2] - s[0, 2] ** 2
    c12 = s[0, 1] * s[0, 2] - s[0, 0] * s[1, 2]
    c22 = s[0, 0] * s[1, 1] - s[0, 1] ** 2
    det = s[0, 0] * c00 + s[0, 1] * c01 + s[0, 2] * c02
    v0, v1, v2 = cov_ip[..., 0], cov_ip[..., 1], cov_ip[..., 2]
    a0 = (c00 * v0 + c01 * v1 + c02 * v2) / det
    a1 = (c01 * v0 + c11 * v1 + c12 * v2) / det
    a2 = (c02 * v0 + c12 * v1 + c22 * v2) / det
    b = mp - a0 * mi[..., 0] - a1 * mi[..., 1] - a2 * mi[..., 2]
    return mean(a0) * guide[..., 0] + mean(a1) * guide[..., 1] + mean(a2) * guide[..., 2] + mean(b)


def _crop(mask: np.ndarray, margin: int) -> Optional[Tuple[slice, slice]]:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size == 0:
        return None
    h, w = mask.shape
    return (
        slice(max(rows[0] - margin, 0), min(rows[-1] + margin + 1, h)),
        slice(max(cols[0] - margin, 0), min(cols[-1] + margin + 1, w)),
    )


def refine_alpha(
    alpha: np.ndarray, guide: np.ndarray, radius: int = 8, eps: float = 1e-4, band: int = 8, device=None
) -> np.ndarray:
    """Alpha (H, W) float32 0..1 with its edges fitted to `guide`, the plate's RGB over the same window.

    radius: the filter's window half-size in pixels. About one model cell (plate width / logit grid
    width, 8 at 2K), the distance by which the model's edge may be off, so each window spans it;
    eps: how strongly flat plate areas flatten alpha (in squared compressed-guide units);
    band: half-width in pixels of the strip around the 0.5 contour that is filtered (its outer half
    fades back to the solid matte).
    device: a torch device (e.g. "cuda") to filter there instead of with numpy.
    """
    alpha = np.asarray(alpha, np.float32)
    if alpha.ndim != 2 or np.shape(guide) != alpha.shape + (3,):
        raise MatteBridgeError(f"refine: alpha {alpha.shape} and guide {np.shape(guide)} must be (H, W) and (H, W, 3)")
    hard = (alpha > 0.5).astype(np.float32)
    # weight of the filtered alpha: 1 near the contour, fading to 0 over the band's outer half, so
    # there is no seam where refinement stops
    weight = box_mean(edge_band(alpha, band - band // 2).astype(np.float32), band // 2)
    box = _crop(weight > 0, radius)
    if box is None:
        return hard
    p, g = alpha[box], compress_guide(np.asarray(guide[box], np.float32))
    if device is None:  # float64: the variances are small differences of large running sums
        q = guided_filter(p.astype(np.float64), g.astype(np.float64), radius, eps)
    else:
        import torch

        t = lambda a: torch.as_tensor(a, dtype=torch.float32, device=device)  # noqa: E731
        mp, mg = float(p.mean()), g.reshape(-1, 3).mean(0)  # centred, for float32's sake
        q = guided_filter(t(p - mp), t(g - mg), radius, eps, torch).cpu().numpy() + mp
    w = weight[box]
    out = hard
    out[box] = (w * np.clip(q, 0.0, 1.0) + (1 - w) * hard[box]).astype(np.float32)
    return out
