"""Temporal smoother: calmer still edges, no lag on moving ones."""

import numpy as np
import pytest

from mattebridge.core.errors import MatteBridgeError
from mattebridge.core.image.resample import upsample_to_window
from mattebridge.core.matte.temporal import TemporalSmoother

N, L = 128, 16  # plate and logit grid: 8 px per cell, as at 2K


def _disk_logits(cx, rng, noise=0.5):
    c = (np.arange(L) + 0.5) * N / L
    d = np.hypot(c[None, :] - cx, c[:, None] - N / 2) - 0.2 * N
    return (-3.0 * d / (N / L) + rng.normal(0, noise, (L, L))).astype(np.float32)


def _alpha(logits):
    return 1 / (1 + np.exp(-upsample_to_window(logits, (N, N), (0, 0, N, N))))


def _right_edge(alpha):
    """Sub-pixel x where the middle row's alpha last falls through 0.5."""
    row = alpha[N // 2].astype(np.float64)
    i = int(np.flatnonzero(row > 0.5)[-1])
    return i + 0.5 + (row[i] - 0.5) / (row[i] - row[i + 1])


def _flicker(frames, region):
    return np.mean([np.abs(b - a)[region].mean() for a, b in zip(frames, frames[1:])])


@pytest.mark.parametrize("on_logits", [False, True])
def test_still_region_flickers_less(on_logits):
    rng = np.random.default_rng(0)
    sm = TemporalSmoother(radius=1, logits=True) if on_logits else TemporalSmoother(radius=12)
    raw, smooth = [], []
    for _ in range(20):
        lg = _disk_logits(N / 2, rng)
        raw.append(_alpha(lg))
        smooth.append(_alpha(sm(lg)) if on_logits else sm(raw[-1]))
    edge = (raw[0] > 0.02) & (raw[0] < 0.98)
    assert _flicker(smooth, edge) < 0.7 * _flicker(raw, edge)


@pytest.mark.parametrize("on_logits", [False, True])
@pytest.mark.parametrize("speed", [1.0, 3.0, 8.0])
def test_moving_edge_does_not_lag(on_logits, speed):
    rng = np.random.default_rng(1)
    sm = TemporalSmoother(radius=1, logits=True) if on_logits else TemporalSmoother(radius=12)
    lags = []
    for t in range(10):
        lg = _disk_logits(N / 2 - 45 + speed * t, rng, noise=0.3)
        raw = _alpha(lg)
        out = _alpha(sm(lg)) if on_logits else sm(raw)
        if t >= 3:
            lags.append(_right_edge(raw) - _right_edge(out))
    assert abs(np.mean(lags)) < 1.0  # within a pixel of the unsmoothed edge, on average
    assert max(lags) < 2.0


def test_first_frame_and_reset_pass_through():
    sm = TemporalSmoother()
    a = np.zeros((8, 8), np.float32)
    b = np.full((8, 8), 0.05, np.float32)
    assert np.array_equal(sm(a), a)
    assert np.all(sm(b) < 0.05)  # a small change is blended
    sm.reset()
    assert np.array_equal(sm(b), b)


def test_large_change_passes_through_at_once():
    sm = TemporalSmoother(radius=0)
    sm(np.zeros((4, 4), np.float32))
    assert np.array_equal(sm(np.ones((4, 4), np.float32)), np.ones((4, 4), np.float32))


def test_logit_gate_ignores_interior_swings():
    # deep inside the object logits swing 10 -> 16: invisible in alpha, so they are blended, not gated
    sm = TemporalSmoother(radius=0, logits=True)
    sm(np.full((4, 4), 10.0, np.float32))
    assert np.all(sm(np.full((4, 4), 16.0, np.float32)) < 13.0)


def test_errors():
    with pytest.raises(MatteBridgeError):
        TemporalSmoother(blend=1.0)
    with pytest.raises(MatteBridgeError):
        TemporalSmoother(threshold=0)
    sm = TemporalSmoother()
    sm(np.zeros((4, 4), np.float32))
    with pytest.raises(MatteBridgeError, match="reset"):
        sm(np.zeros((5, 4), np.float32))


def test_raw_edges_are_raw_unless_smoothing_is_asked_for():
    from mattebridge.core.track.job import TrackJob, smooths
    from mattebridge.core.wire.prompts import Prompts
    from mattebridge.core.wire.sequence import FrameRange

    def job(**kw):
        return TrackJob(plate="p.####.exr", frames=FrameRange(1, 2), prompts=Prompts(), out=None, **kw)

    assert not smooths(job(edge="raw")) and smooths(job(edge="raw", stabilize=True))
    assert smooths(job(edge="soft")) and smooths(job(edge="hard"))
    assert not smooths(job(edge="soft", stabilize=False))
