"""Synthetic matting benchmark: does `--edge soft` beat `raw`? And does the temporal smoother calm a
static shot without smearing a moving edge?

Ground-truth alphas (soft shapes, hair-like strands, motion blur) are composited over scene-linear
noise textures. The model's output is simulated the way SAM 2.1 produces it at 2K: ground truth
area-averaged to a grid 8x coarser than the plate (256 logits for a 2048 plate), mapped to logits
k * (coverage - 0.5) plus noise, then upsampled exactly as core/alpha.py does. Metrics are the standard
ones (Rhemann et al. 2009, as in the Deep Image Matting evaluation), over the whole frame:
SAD = sum|a - gt| / 1000, MSE = mean (a - gt)^2, Grad = sum (|grad a| - |grad gt|)^2 / 1000 with
Gaussian-derivative gradients (sigma 1.4).

Run: python bench/matting_quality.py
"""

from __future__ import annotations

import sys
from typing import Callable, Dict, List, Tuple

import numpy as np

from mattebridge.core.image.resample import area_resize, upsample_to_window
from mattebridge.core.matte.refine import refine_alpha
from mattebridge.core.matte.temporal import TemporalSmoother

SIZE = 512  # plate is SIZE x SIZE
CELL = 8  # plate pixels per model logit (2048 / 256)
LOGIT_SCALE = 12.0  # logits = LOGIT_SCALE * (coverage - 0.5) + noise
LOGIT_NOISE = 0.5


# --- synthetic scenes ---------------------------------------------------------------------------
def _grid(n: int = SIZE) -> Tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) + 0.5
    return xx, yy


def _coverage(signed_distance: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage of {d < 0} for a signed distance in pixels."""
    return np.clip(0.5 - signed_distance, 0.0, 1.0).astype(np.float32)


def _blob(cx: float, cy: float, r: float, seed: int) -> np.ndarray:
    xx, yy = _grid()
    rng = np.random.default_rng(seed)
    theta = np.arctan2(yy - cy, xx - cx)
    wobble = sum(rng.uniform(0.03, 0.1) * np.sin(k * theta + rng.uniform(0, 6.3)) for k in (2, 3, 5, 7))
    return _coverage(np.hypot(xx - cx, yy - cy) - r * (1 + wobble))


def _strands(base: np.ndarray, cx: float, cy: float, r: float, count: int, seed: int) -> np.ndarray:
    """Thin curved strands (1-2 px wide, partly transparent) growing out of a blob, like hair."""
    rng = np.random.default_rng(seed)
    alpha = base.copy()
    for _ in range(count):
        theta, length = rng.uniform(0, 2 * np.pi), rng.uniform(0.4, 0.9) * r
        width, opacity, bend = rng.uniform(0.6, 1.8), rng.uniform(0.6, 1.0), rng.uniform(-0.6, 0.6)
        t = np.linspace(0, 1, 200)
        ang = theta + bend * t
        px = cx + np.cos(ang) * (0.8 * r + length * t)
        py = cy + np.sin(ang) * (0.8 * r + length * t)
        x0, x1 = int(max(px.min() - 3, 0)), int(min(px.max() + 4, SIZE))
        y0, y1 = int(max(py.min() - 3, 0)), int(min(py.max() + 4, SIZE))
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
        d = np.min(np.hypot(xx[..., None] - px, yy[..., None] - py), axis=-1)
        strand = opacity * np.clip(width / 2 + 0.5 - d, 0, 1)
        alpha[y0:y1, x0:x1] = 1 - (1 - alpha[y0:y1, x0:x1]) * (1 - strand)
    return alpha.astype(np.float32)


def _motion_blur(alpha: np.ndarray, length: int) -> np.ndarray:
    """Horizontal box blur: an object moving `length` pixels while the shutter is open."""
    c = np.cumsum(np.pad(alpha, ((0, 0), (length, 0)), mode="edge"), axis=1)
    return ((c[:, length:] - c[:, :-length]) / length).astype(np.float32)


def _texture(seed: int, colour, contrast: float) -> np.ndarray:
    """Scene-linear texture: colour x exp(fractal noise), with occasional highlights above 1."""
    rng = np.random.default_rng(seed)
    noise = np.zeros((SIZE, SIZE, 3), np.float32)
    for octave in (4, 16, 64, 256):
        layer = area_resize(rng.normal(0, 1, (octave, octave, 1)).astype(np.float32), SIZE, SIZE)
        noise += layer * (0.6 if octave < 64 else 0.3)
    tex = np.asarray(colour, np.float32) * np.exp(contrast * noise)
    return tex.astype(np.float32)


def scenes() -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """name -> (ground-truth alpha, plate)."""
    c = SIZE / 2
    blob = _blob(c, c, 0.3 * SIZE, seed=1)
    hair = _strands(blob, c, c, 0.3 * SIZE, count=40, seed=2)
    fg = _texture(10, (0.55, 0.32, 0.2), 0.35)
    bg = _texture(11, (0.12, 0.25, 0.3), 0.5)
    fg_dark = _texture(12, (0.08, 0.06, 0.05), 0.3)
    cases = {
        "soft blob": _motion_blur(blob, 3),
        "sharp blob, dark fg": blob,
        "hair": hair,
        "motion blur 24px": _motion_blur(blob, 24),
        "hair + motion blur 12px": _motion_blur(hair, 12),
    }
    out = {}
    for name, gt in cases.items():
        f = fg_dark if "dark" in name else fg
        out[name] = (gt, gt[..., None] * f + (1 - gt[..., None]) * bg)
    return out


# --- the model, simulated ----------------------------------------------------------------------
def model_logits(gt: np.ndarray, rng: np.random.Generator, noise: float = LOGIT_NOISE) -> np.ndarray:
    grid = area_resize(gt, SIZE // CELL, SIZE // CELL)
    return (LOGIT_SCALE * (grid - 0.5) + rng.normal(0, noise, grid.shape)).astype(np.float32)


def upsample(logits: np.ndarray) -> np.ndarray:
    return upsample_to_window(logits, (SIZE, SIZE), (0, 0, SIZE, SIZE))


def sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))).astype(np.float32)


# --- metrics -----------------------------------------------------------------------------------
def _gauss_gradient(a: np.ndarray, sigma: float = 1.4) -> np.ndarray:
    """|grad a| with Gaussian-derivative filters (separable, edges replicated)."""
    r = int(np.ceil(3 * sigma))
    x = np.arange(-r, r + 1, dtype=np.float64)
    g = np.exp(-(x**2) / (2 * sigma**2))
    g /= g.sum()
    dg = -x * g / sigma**2

    def conv(img, k, axis):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (r, r)
        p = np.pad(img, pad, mode="edge")
        n = img.shape[axis]
        return sum(k[::-1][i] * np.take(p, np.arange(i, i + n), axis=axis) for i in range(2 * r + 1))

    a = a.astype(np.float64)
    gx = conv(conv(a, dg, 1), g, 0)
    gy = conv(conv(a, dg, 0), g, 1)
    return np.hypot(gx, gy)


def metrics(a: np.ndarray, gt: np.ndarray) -> Dict[str, float]:
    diff = a.astype(np.float64) - gt
    grad = np.sum((_gauss_gradient(a) - _gauss_gradient(gt)) ** 2)
    return {"SAD": float(np.abs(diff).sum() / 1000), "MSE": float(np.mean(diff**2)), "Grad": float(grad / 1000)}


# --- the benchmarks ----------------------------------------------------------------------------
METHODS: Dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "raw": lambda up, plate: sigmoid(up),
    "hard": lambda up, plate: (up > 0).astype(np.float32),
    "soft": lambda up, plate: refine_alpha(sigmoid(up), plate),
}


def matting_table(seed: int = 0) -> Tuple[List[str], Dict[str, Dict[str, float]]]:
    """Markdown rows and the per-method averages."""
    rng = np.random.default_rng(seed)
    rows = ["| case | method | SAD | MSE | Grad |", "| --- | --- | ---: | ---: | ---: |"]
    totals: Dict[str, Dict[str, List[float]]] = {m: {"SAD": [], "MSE": [], "Grad": []} for m in METHODS}
    for name, (gt, plate) in scenes().items():
        up = upsample(model_logits(gt, rng))
        for method, fn in METHODS.items():
            m = metrics(fn(up, plate), gt)
            for k, v in m.items():
                totals[method][k].append(v)
            rows.append(f"| {name} | {method} | {m['SAD']:.3f} | {m['MSE']:.5f} | {m['Grad']:.3f} |")
    means = {method: {k: float(np.mean(v)) for k, v in t.items()} for method, t in totals.items()}
    for method, m in means.items():
        rows.append(f"| **mean** | {method} | {m['SAD']:.3f} | {m['MSE']:.5f} | {m['Grad']:.3f} |")
    return rows, means


def _disk(cx: float, cy: float, r: float) -> np.ndarray:
    xx, yy = _grid()
    return _coverage(np.hypot(xx - cx, yy - cy) - r)


def _edge_x(alpha: np.ndarray) -> float:
    """Sub-pixel x where the centre row's alpha last falls through 0.5 (the disk's right edge)."""
    row = alpha[SIZE // 2].astype(np.float64)
    i = int(np.flatnonzero(row > 0.5)[-1])
    return i + 0.5 + (row[i] - 0.5) / (row[i] - row[i + 1])


SMOOTHERS = {  # the same filter fed the two ways the pipeline can: full-res alpha, or the logit grid
    "alpha, full res": (False, lambda: TemporalSmoother(radius=int(1.5 * CELL))),
    "logits, model grid": (True, lambda: TemporalSmoother(radius=1, logits=True)),
}


def _frames(gts, rng, smoother, on_logits: bool):
    for gt in gts:
        logits = model_logits(gt, rng, noise=1.0)
        if smoother and on_logits:
            logits = smoother(logits)
        a = sigmoid(upsample(logits))
        yield smoother(a) if smoother and not on_logits else a


def temporal_table(frames: int = 24, seed: int = 0, speeds=(1.0, 4.0)) -> Tuple[List[str], Dict[str, Dict[str, float]]]:
    """Flicker of a still disk under per-frame logit noise (N(0, 1) per model cell), and the error and
    lag of a disk's edge moving at `speeds` px per frame (a smoother that smears shows up there)."""
    c, r = SIZE / 2, 0.25 * SIZE
    xx, yy = _grid()
    strip = np.abs(np.hypot(xx - c, yy - c) - r) < 2 * CELL  # the still edge, +-2 model cells
    results: Dict[str, Dict[str, float]] = {}
    for label, (on_logits, make) in {"raw": (False, lambda: None), **SMOOTHERS}.items():
        rng = np.random.default_rng(seed)
        res = results[label] = {}
        out = list(_frames([_disk(c, c, r)] * frames, rng, make(), on_logits))
        res["flicker"] = float(np.mean([np.abs(b - a)[strip].mean() for a, b in zip(out, out[1:])]))
        for speed in speeds:
            gts = [_disk(c - 60 + speed * t, c, r) for t in range(frames)]
            out = list(_frames(gts, rng, make(), on_logits))[4:]  # once a smoother has history
            res[f"SAD {speed:g}"] = float(np.mean([np.abs(a - g).sum() / 1000 for a, g in zip(out, gts[4:])]))
            res[f"lag {speed:g}"] = float(np.mean([_edge_x(g) - _edge_x(a) for a, g in zip(out, gts[4:])]))
    head = ["flicker (still edge: mean abs change per frame)"]
    for speed in speeds:
        head += [f"moving {speed:g} px/frame: SAD", f"moving {speed:g} px/frame: edge lag px"]
    keys = ["flicker"] + [k for speed in speeds for k in (f"SAD {speed:g}", f"lag {speed:g}")]
    rows = ["| measure | " + " | ".join(results) + " |", "| --- |" + " ---: |" * len(results)]
    for name, key in zip(head, keys):
        rows.append(f"| {name} | " + " | ".join(f"{results[m][key]:.4f}" for m in results) + " |")
    return rows, results


def main(argv=None) -> int:
    rows, means = matting_table()
    print(
        f"## Edge modes ({SIZE}x{SIZE} plates, model grid {SIZE // CELL}x{SIZE // CELL}, "
        f"logits {LOGIT_SCALE:g}*(coverage-0.5) + N(0, {LOGIT_NOISE:g}))\n"
    )
    print("\n".join(rows))
    wins = all(means["soft"][k] < means["raw"][k] for k in ("SAD", "MSE", "Grad"))
    print(f"\nsoft beats raw on SAD, MSE and Grad (means): {'yes' if wins else 'NO'}\n")
    rows, _ = temporal_table()
    print("## Temporal smoothing\n")
    print("\n".join(rows))
    return 0 if wins else 1


if __name__ == "__main__":
    sys.exit(main())
