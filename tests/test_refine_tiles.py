"""The tiled float32 refine against the float64 whole-bounding-box refine it replaced, at 1080p and 4K sizes."""

import numpy as np
import pytest

from mattebridge.core.image.resample import area_resize, upsample_to_window
from mattebridge.core.matte import refine
from mattebridge.core.matte.boxfilter import box_sum_tiles, box_sum_valid, dilate, window_sums
from mattebridge.core.matte.refine import (
    Guide,
    _block_mean,
    compress_guide,
    contour,
    edge_tiles,
    guided_filter,
    refine_alpha,
    subsampling,
)

# max |tiled float32 - float64|: against the whole-image filter (reached 3.4e-5 at 1080p), and against the
# previous code, whose windows were clipped at the band's bounding box, not the image (reached 2.7e-4)
TOL_WHOLE, TOL_PREVIOUS = 5e-5, 5e-4


def _box_sum64(x, r):
    """The previous box sum: float64 running sums over whole rows and columns, clipped at the borders."""
    for axis in (0, 1):
        n = x.shape[axis]
        c = np.concatenate([np.zeros_like(np.take(x, [0], axis)), np.cumsum(x, axis)], axis)
        hi, lo = np.minimum(np.arange(n) + r + 1, n), np.maximum(np.arange(n) - r, 0)
        x = np.take(c, hi, axis) - np.take(c, lo, axis)
    return x


def _guided64(p, guide, r, eps):
    n = _box_sum64(np.ones(p.shape), r)
    mean = lambda x: _box_sum64(x, r) / n.reshape(n.shape + (1,) * (x.ndim - 2))  # noqa: E731
    mi, mp = mean(guide), mean(p)
    cov = mean(guide * p[..., None]) - mi * mp[..., None]
    sigma = mean(guide[..., :, None] * guide[..., None, :]) - mi[..., :, None] * mi[..., None, :] + eps * np.eye(3)
    a = np.linalg.solve(sigma, cov[..., None])[..., 0]
    b = mp - (a * mi).sum(-1)
    return (mean(a) * guide).sum(-1) + mean(b)


def _refine64(alpha, guide, r, band, eps=1e-4, whole=False):
    """The previous refine: float64 over the bounding box of the band (or, `whole`, the whole image)."""
    inside = alpha > 0.5
    hard = inside.astype(np.float64)
    near = _box_sum64(contour(inside).astype(np.float64), band - band // 2) > 0.5
    weight = _box_sum64(near.astype(np.float64), band // 2) / _box_sum64(np.ones(alpha.shape), band // 2)
    ys, xs = np.nonzero(weight > 0)
    if whole:
        box = slice(None), slice(None)
    else:
        h, w = alpha.shape
        box = (
            slice(max(ys.min() - r, 0), min(ys.max() + r + 1, h)),
            slice(max(xs.min() - r, 0), min(xs.max() + r + 1, w)),
        )
    q = _guided64(alpha[box].astype(np.float64), compress_guide(guide[box]).astype(np.float64), r, eps)
    out = hard.copy()
    out[box] = weight[box] * np.clip(q, 0, 1) + (1 - weight[box]) * hard[box]
    return out


def _truth(w, h, kind):
    """The object's true alpha: a person-sized figure, or one that fills the frame, with a wobbly outline."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    cx, cy, rx, ry = (w * 0.5, h * 0.55, w * 0.12, h * 0.42) if kind == "person" else (w / 2, h / 2, w * 0.47, h * 0.46)
    theta = np.arctan2((yy - cy) / ry, (xx - cx) / rx)
    wobble = 1 + 0.06 * np.sin(5 * theta + 1) + 0.03 * np.sin(17 * theta)
    return np.clip(0.5 - (np.hypot((xx - cx) / rx, (yy - cy) / ry) - wobble) * min(rx, ry), 0, 1).astype(np.float32)


def _plate(w, h, kind, seed=0, grid=256):
    """A textured scene-linear plate with an HDR highlight, an object (`_truth`) and the model-like raw alpha
    from a `grid` x `grid` logit grid (256: SAM 2.1 at 1024)."""
    rng = np.random.default_rng(seed)
    gt = _truth(w, h, kind)

    def texture(colour):
        low = area_resize(rng.normal(0, 1, (h // 40, w // 40, 1)).astype(np.float32), h, w)
        fine = rng.normal(0, 1, (h, w, 1)).astype(np.float32)
        return np.asarray(colour, np.float32) * np.exp(0.4 * low + 0.05 * fine)

    fg, bg = texture((0.6, 0.3, 0.2)), texture((0.1, 0.25, 0.35))
    bg[h // 10 : h // 10 + 60, w // 3 : w // 3 + 200] = 40.0
    plate = gt[..., None] * fg + (1 - gt[..., None]) * bg
    cells = area_resize(gt, grid, grid)
    logits = (12 * (cells - 0.5) + rng.normal(0, 0.5, cells.shape)).astype(np.float32)
    raw = 1 / (1 + np.exp(-upsample_to_window(logits, (w, h), (0, 0, w, h))))
    return plate, raw.astype(np.float32), max(1, round(max(w, h) / grid))


def test_whole_image_filter_is_the_previous_filter():
    rng = np.random.default_rng(3)
    p, guide = rng.random((40, 70)), rng.random((40, 70, 3))
    for r in (1, 4, 9):
        assert np.abs(guided_filter(p, guide, r, 1e-3) - _guided64(p, guide, r, 1e-3)).max() < 1e-9


# 1080p at its own size; 4K as a full-width strip (the rows are as long as at 4K, radius 15 as at 4K)
@pytest.mark.parametrize(
    "w, h, kind, tiles",
    [(1920, 1080, "person", 60), (1920, 1080, "filling", 130), (3840, 720, "person", 90), (3840, 720, "filling", 220)],
)
def test_tiles_match_the_float64_refine(w, h, kind, tiles):
    plate, raw, r = _plate(w, h, kind)
    out = refine_alpha(raw, plate, radius=r, band=r)
    assert out.dtype == np.float32
    assert np.abs(out - _refine64(raw, plate, r, r, whole=True)).max() < TOL_WHOLE
    assert np.abs(out - _refine64(raw, plate, r, r)).max() < TOL_PREVIOUS
    ty, tx = edge_tiles(contour(raw > 0.5), r, 64)
    assert len(ty) <= tiles < -(-w // 64) * -(-h // 64) / 2  # only the band's tiles are filtered


def test_window_sums_are_the_running_sums():
    # the numpy exact filter's box sums: pairwise sums of power-of-two runs (31 = 16 + 16 - 1 among them), the
    # columns over the flattened tiles
    rng = np.random.default_rng(6)
    x = rng.random((3, 70, 45))
    for width in range(1, 46):
        want = np.stack([x[:, :, i : i + width].sum(2) for i in range(45 - width + 1)], 2)
        assert np.abs(window_sums(x, width, 2) - want).max() < 1e-12
    for r in range(22):
        want = box_sum_valid(np.moveaxis(x, 0, -1), r)
        assert np.abs(np.moveaxis(box_sum_tiles(x, r), 0, -1) - want).max() < 1e-11
        x32 = (x - 0.5).astype(np.float32)  # float32: within its rounding of the float64 sums
        assert np.abs(box_sum_tiles(x32, r) - box_sum_tiles(x32.astype(np.float64), r)).max() < 1e-6 * (2 * r + 1) ** 2


def test_edge_tiles_are_those_within_reach_of_the_edge():
    # against the definition, tile by tile: its square widened by the reach holds an edge pixel
    rng = np.random.default_rng(7)
    for shape in [(1, 1), (64, 64), (100, 37), (257, 130)]:
        for density in (0, 0.0005, 0.01, 1):
            edge = rng.random(shape) < density
            for reach, tile in [(0, 64), (8, 64), (40, 64), (15, 60), (70, 32)]:
                want = [
                    (ty, tx)
                    for ty in range(-(-shape[0] // tile))
                    for tx in range(-(-shape[1] // tile))
                    if edge[
                        max(ty * tile - reach, 0) : (ty + 1) * tile + reach,
                        max(tx * tile - reach, 0) : (tx + 1) * tile + reach,
                    ].any()
                ]
                ty, tx = edge_tiles(edge, reach, tile)
                assert list(zip(ty.tolist(), tx.tolist())) == want, (shape, density, reach, tile)
            assert edge_tiles(np.asfortranarray(edge), 8, 64)[1].tolist() == edge_tiles(edge, 8, 64)[1].tolist()


def test_numpy_tiles_keep_float32s_digits_next_to_a_highlight():
    # the 40.0 highlight in the band: the previous numpy running sums (a loop of slice adds over a tile) reached
    # 7.4e-4 here, the pairwise window sums 4.1e-5
    plate, raw, r = _plate(960, 540, "person", grid=128)
    assert np.abs(refine_alpha(raw, plate, radius=r, band=r) - _refine64(raw, plate, r, r, whole=True)).max() < 1e-4


def test_tiles_side_by_side_filter_as_one_crop(monkeypatch):
    # pairs (and longer runs) of tiles share their halos in one crop: the same filter, within float32 rounding
    ty, tx = np.array([0, 0, 0, 1, 1, 2, 2, 2]), np.array([0, 1, 2, 0, 2, 1, 2, 3])
    assert [c.tolist() for c in refine._runs(ty, tx, 2)] == [[[2], [3], [4], [7]], [[0, 1], [5, 6]]]
    assert [c.tolist() for c in refine._runs(ty, tx, 3)] == [[[3], [4]], [[0, 1, 2], [5, 6, 7]]]
    plate, raw, r = _plate(960, 540, "filling", grid=128)  # crops inside the image and across its border
    want = refine_alpha(raw, plate, radius=r, band=r)
    for run in (1, 3):
        monkeypatch.setattr(refine, "RUN", run)
        assert np.abs(refine_alpha(raw, plate, radius=r, band=r) - want).max() < 1e-6


def test_float32_keeps_the_variances_of_a_bright_flat_plate():
    # a bright plate with faint texture: uncentred float32 running sums would drown the window variances
    rng = np.random.default_rng(5)
    w, h = 3840, 256
    plate = (1000 * np.exp(0.02 * rng.normal(0, 1, (h, w, 3)))).astype(np.float32)
    alpha = np.clip((np.arange(w) - w / 2) / 16 + 0.5, 0, 1)[None].repeat(h, 0).astype(np.float32)
    plate[:, w // 2 :] *= 1.5
    out = refine_alpha(alpha, plate, radius=15, band=15)
    assert np.abs(out - _refine64(alpha, plate, 15, 15, whole=True)).max() < TOL_WHOLE


def test_tiles_away_from_the_edge_are_not_computed():
    alpha = np.zeros((512, 512), np.float32)
    alpha[100:140, 100:150] = 1
    ty, tx = edge_tiles(contour(alpha > 0.5), 8, 64)
    assert sorted(zip(ty.tolist(), tx.tolist())) == [(1, 1), (1, 2), (2, 1), (2, 2)]
    plate = np.random.default_rng(0).random((512, 512, 3)).astype(np.float32)
    out = refine_alpha(alpha, plate, radius=8, band=8)
    assert np.array_equal(out[192:], alpha[192:]) and np.array_equal(out[:, 192:], alpha[:, 192:])


def test_a_reach_wider_than_half_a_tile_marks_the_tile_under_the_edge():
    edge = np.zeros((256, 64), bool)
    edge[95:97] = True  # a contour between rows 95 and 96: rows 55..136 are within 40 of it, in tiles 0, 1 and 2
    assert edge_tiles(edge, 40, 64)[0].tolist() == [0, 1, 2]
    assert edge_tiles(edge, 20, 64)[0].tolist() == [1]


def test_band_weights_of_a_wide_band_count_exactly():
    """A band of 300 px: the windows hold more pixels than a uint16 counts (the weights' integer sums widen)."""
    band = 300
    alpha = np.zeros((700, 700), np.float32)
    alpha[350:] = 1
    edge = contour(alpha > 0.5)
    ty, tx = edge_tiles(edge, band, band)
    weight = np.zeros(alpha.shape, np.float32)
    for k, w in enumerate(refine._weights(edge, ty, tx, band, band)):
        y, x = ty[k] * band, tx[k] * band
        weight[y : y + band, x : x + band] = w[: 700 - y, : 700 - x]
    rows = np.arange(700)
    near = np.abs(rows - 349.5) <= band - band // 2 + 0.5  # within `grow` of either contour row
    fade = band // 2
    expected = np.array([near[max(y - fade, 0) : y + fade + 1].mean() for y in rows])
    assert np.abs(weight - expected[:, None]).max() < 1e-6 and (weight[349:351] == 1).all()


def test_torch_tiles_match_numpy_tiles():
    torch = pytest.importorskip("torch")
    plate, raw, r = _plate(960, 540, "person", seed=1, grid=128)
    a = refine_alpha(raw, plate, radius=r, band=r)
    b = refine_alpha(raw, plate, radius=r, band=r, device=torch.device("cpu"))
    ref = _refine64(raw, plate, r, r, whole=True)
    # the 40.0 highlight inside the band here: numpy's sequential running sums reach 3.1e-4, torch's 2e-5
    assert np.abs(a - ref).max() < TOL_PREVIOUS and np.abs(b - ref).max() < TOL_WHOLE


def test_subsampling_keeps_the_exact_filter_at_the_default_model_size():
    # 1024 px model input: radius 8 at 2K, 15 at 4K, exact; a 256 px input: 30 at 2K, 60 at 4K, subsampled
    assert [subsampling(r) for r in (1, 8, 15, 16, 30, 60)] == [1, 1, 1, 2, 3, 6]


def test_block_means_with_partial_blocks():
    x = np.random.default_rng(4).random((37, 53, 3)).astype(np.float32)
    want = [[x[i : i + 5, j : j + 5].mean((0, 1)) for j in range(0, 53, 5)] for i in range(0, 37, 5)]
    assert np.abs(_block_mean(x, 5) - np.array(want)).max() < 1e-6


# the Fast Guided Filter at a 64 x 64 logit grid (SAM 2.1 at 256): radius 30 at 1080p, 60 along a 4K row. Over
# the band its difference from the exact filter reached max 0.27 (filling, 4K row; 0.12 at 1080p), 99th
# percentile 0.026, mean 0.005; its error against the true alpha is 0.80-0.91x the exact filter's (block means
# average the plate's noise)
@pytest.mark.parametrize("w, h, kind", [(1920, 1080, "person"), (3840, 720, "filling")])
def test_fast_filter_at_large_radii_is_the_exact_one_within_tolerance(w, h, kind):
    plate, raw, r = _plate(w, h, kind, grid=64)
    assert subsampling(r) > 1
    fast, exact = refine_alpha(raw, plate, radius=r, band=r), refine_alpha(raw, plate, radius=r, band=r, fast=False)
    band = dilate(contour(raw > 0.5), r)
    assert np.array_equal(fast[~band], (raw[~band] > 0.5).astype(np.float32))  # solid outside the band
    d = np.abs(fast - exact)[band]
    assert d.max() <= 0.3 and np.quantile(d, 0.99) <= 0.03 and d.mean() <= 0.006
    gt = _truth(w, h, kind)
    assert np.abs(fast - gt).sum() <= np.abs(exact - gt).sum() < 0.8 * np.abs(raw - gt).sum()


@pytest.mark.parametrize("grid", [64, 256])  # radius 30, the fast filter; radius 8, the exact one
def test_a_kept_guide_gives_the_same_matte_again(grid):
    plate, raw, r = _plate(1920, 540, "person", grid=grid)
    guide = Guide(plate)
    want = refine_alpha(raw, plate, radius=r, band=r)
    assert np.array_equal(refine_alpha(raw, guide, radius=r, band=r), want)
    moved = np.roll(raw, 7, axis=1)  # the next click: another matte on the same plate
    assert np.array_equal(refine_alpha(moved, guide, radius=r, band=r), refine_alpha(moved, plate, radius=r, band=r))
