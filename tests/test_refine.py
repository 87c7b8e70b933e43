"""Edge refinement: better than the raw upsampled sigmoid on a synthetic plate, confined to the edge."""

import numpy as np
import pytest

from mattebridge.core.errors import MatteBridgeError
from mattebridge.core.image.resample import area_resize, upsample_to_window
from mattebridge.core.matte.boxfilter import dilate
from mattebridge.core.matte.refine import compress_guide, contour, guided_filter, refine_alpha

N, CELL = 192, 8


def _scene(seed=0):
    """A wobbly anti-aliased blob over a textured scene-linear plate, and the model-like raw alpha."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:N, 0:N] + 0.5
    theta = np.arctan2(yy - N / 2, xx - N / 2)
    r = 0.3 * N * (1 + 0.08 * np.sin(3 * theta + 1) + 0.05 * np.sin(7 * theta))
    gt = np.clip(r - np.hypot(xx - N / 2, yy - N / 2) + 0.5, 0, 1).astype(np.float32)

    def tex(c):
        return np.asarray(c, np.float32) * np.exp(
            0.3 * area_resize(rng.normal(0, 1, (24, 24, 1)).astype(np.float32), N, N)
        )

    fg, bg = tex((0.6, 0.3, 0.2)), tex((0.1, 0.25, 0.35))
    bg[10:30, 10:30] = 40.0  # a highlight far from the edge must not matter
    plate = gt[..., None] * fg + (1 - gt[..., None]) * bg
    grid = area_resize(gt, N // CELL, N // CELL)
    logits = 12 * (grid - 0.5) + rng.normal(0, 0.5, grid.shape)
    raw = 1 / (1 + np.exp(-upsample_to_window(logits, (N, N), (0, 0, N, N))))
    return gt, plate.astype(np.float32), raw.astype(np.float32)


def test_refine_beats_raw():
    gt, plate, raw = _scene()
    soft = refine_alpha(raw, plate)
    assert soft.dtype == np.float32 and soft.shape == raw.shape
    assert 0 <= soft.min() and soft.max() <= 1
    sad_raw, sad_soft = np.abs(raw - gt).sum(), np.abs(soft - gt).sum()
    mse_raw, mse_soft = np.mean((raw - gt) ** 2), np.mean((soft - gt) ** 2)
    assert sad_soft < 0.8 * sad_raw
    assert mse_soft < 0.8 * mse_raw


def test_outside_band_is_solid_and_inside_is_filtered():
    gt, plate, raw = _scene(1)
    soft = refine_alpha(raw, plate, band=4)
    band = dilate(contour(raw > 0.5), 4)
    assert np.array_equal(soft[~band], (raw[~band] > 0.5).astype(np.float32))
    assert not np.array_equal(soft[band], raw[band])


def test_flat_alpha_and_flat_guide():
    plate = np.ones((32, 32, 3), np.float32)
    assert np.array_equal(refine_alpha(np.full((32, 32), 0.9, np.float32), plate), np.ones((32, 32), np.float32))
    assert not refine_alpha(np.full((32, 32), 0.2, np.float32), plate).any()
    # a featureless plate gives the filter nothing to follow: the edge stays where the model put it
    alpha = np.zeros((32, 32), np.float32)
    alpha[:, 16:] = 1
    out = refine_alpha(alpha, plate, radius=3)  # with a flat guide: a box filter applied twice, 4r+1 wide
    assert np.all(out[:, :10] == 0) and np.all(out[:, 22:] == 1)
    assert np.allclose(out[:, :16] + out[:, 31:15:-1], 1, atol=1e-5)  # symmetric about the edge
    assert np.all(np.diff(out, axis=1) >= -1e-6)  # a monotone ramp


def test_guided_filter_snaps_to_the_guide_edge():
    # p is a 16 px ramp (the model's blur); the guide has the sharp step: q must jump where the guide does
    x = np.arange(64)
    step = (x >= 32).astype(np.float64)
    p = np.tile(np.clip((x - 24) / 16, 0, 1), (16, 1))
    guide = np.repeat(np.tile(step, (16, 1))[..., None], 3, axis=2)
    q = guided_filter(p, guide, radius=8, eps=1e-4)[8]
    assert q[32] - q[31] > 0.4  # p's own step there is 1/16
    assert np.mean((q - step) ** 2) < 0.7 * np.mean((p[8] - step) ** 2)


def test_compress_guide_orders_and_tames_highlights():
    v = compress_guide(np.array([[[-1, 0, 0.18], [1, 100, 1e4]]], np.float32))
    assert v[0, 0, 0] == 0 and v[0, 0, 1] == 0 and np.isclose(v[0, 1, 0], 1.0)
    assert np.all(np.diff(v.reshape(-1)[1:]) > 0) and v.max() < 6


def test_torch_matches_numpy():
    torch = pytest.importorskip("torch")
    gt, plate, raw = _scene(2)
    a = refine_alpha(raw, plate)
    b = refine_alpha(raw, plate, device=torch.device("cpu"))
    assert np.abs(a - b).max() < 2e-3


def test_shape_errors():
    with pytest.raises(MatteBridgeError, match="refine"):
        refine_alpha(np.zeros((4, 4), np.float32), np.zeros((4, 5, 3), np.float32))
