"""Hole filling and island removal on soft mattes and on the model's logit grid."""

import numpy as np

from mattebridge.core.matte.holes import fill_holes, fill_holes_logits, label_runs, small_components


def _flood_labels(mask, eight):
    """Reference labelling: a plain flood fill, one pixel at a time."""
    h, w = mask.shape
    lab = -np.ones((h, w), int)
    steps = [(-1, 0), (1, 0), (0, -1), (0, 1)] + ([(-1, -1), (-1, 1), (1, -1), (1, 1)] if eight else [])
    n = 0
    for y in range(h):
        for x in range(w):
            if mask[y, x] and lab[y, x] < 0:
                lab[y, x], todo = n, [(y, x)]
                while todo:
                    cy, cx = todo.pop()
                    for dy, dx in steps:
                        yy, xx = cy + dy, cx + dx
                        if 0 <= yy < h and 0 <= xx < w and mask[yy, xx] and lab[yy, xx] < 0:
                            lab[yy, xx] = n
                            todo.append((yy, xx))
                n += 1
    return lab, n


def _run_labels(mask, eight):
    rows, starts, ends, comp, n = label_runs(mask, eight)
    lab = -np.ones(mask.shape, int)
    for r, s, e, c in zip(rows, starts, ends, comp):
        lab[r, s:e] = c
    return lab, n


def test_labels_match_flood_fill():
    for seed in range(12):
        mask = np.random.default_rng(seed).random((37, 53)) > (0.4 + 0.02 * seed)
        for eight in (False, True):
            got, n = _run_labels(mask, eight)
            ref, n_ref = _flood_labels(mask, eight)
            assert n == n_ref
            # same partition: a one-to-one map between the two labellings
            pairs = set(zip(got[mask].tolist(), ref[mask].tolist()))
            assert len(pairs) == n and (got[~mask] == -1).all()


def test_spiral_is_one_component():
    # a long snake (the worst case for label propagation) must be one component
    m = np.zeros((41, 41), bool)
    for i in range(0, 20, 2):
        m[i, i : 41 - i] = m[40 - i, i : 41 - i] = True
        m[i : 41 - i, 40 - i] = True
        m[i + 2 : 41 - i, i] = True
        if i + 2 < 20:
            m[i + 2, i : i + 3] = True
    assert _run_labels(m, False)[1] == _flood_labels(m, False)[1]


def _soft_square(h=120, w=160):
    """A soft-edged 80x100 square matte (alpha ramps over 3 px)."""
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    d = np.maximum(np.abs(xx - 80) - 50, np.abs(yy - 60) - 40)
    return np.clip(0.5 - d / 3, 0, 1).astype(np.float32)


def _soft_disk(a, cx, cy, r, value):
    yy, xx = np.mgrid[0 : a.shape[0], 0 : a.shape[1]] + 0.5
    cover = np.clip(r - np.hypot(xx - cx, yy - cy) + 0.5, 0, 1)
    return (a * (1 - cover) + value * cover).astype(np.float32)


def test_small_holes_filled_large_kept():
    a = _soft_square()
    a = _soft_disk(a, 60, 50, 3, 0.0)  # ~28 px hole
    a = _soft_disk(a, 100, 70, 9, 0.0)  # ~250 px hole
    out = fill_holes(a, max_area=60)
    assert out[50, 60] == 1 and (out[44:57, 54:67] == 1).all()  # filled, its soft rim too
    assert out[70, 100] == 0  # the large hole stays
    assert np.array_equal(out[:, :20], a[:, :20])  # the matte's outer edge untouched
    assert out.dtype == np.float32


def test_hole_touching_border_is_not_a_hole():
    a = np.ones((30, 30), np.float32)
    a[0:3, 10:14] = 0  # a notch at the top edge: not enclosed
    a[10:13, 10:13] = 0  # enclosed
    out = fill_holes(a, max_area=20, grow=0)
    assert (out[0:3, 10:14] == 0).all() and (out[10:13, 10:13] == 1).all()


def test_islands_removed_large_kept():
    a = _soft_square()
    a = _soft_disk(a, 10, 10, 2.5, 1.0)  # a speck outside the square
    a = _soft_disk(a, 150, 110, 2, 0.8)  # another, semi-opaque
    out = fill_holes(a, max_area=60)
    assert out[:20, :20].max() == 0 and out[105:, 145:].max() == 0  # gone, soft fringe included
    assert np.array_equal(out[20:100, 30:130], a[20:100, 30:130])  # the object itself untouched


def test_corner_touching_island_counts_as_one():
    a = np.zeros((20, 20), np.float32)
    a[5:8, 5:8] = 1
    a[8:11, 8:11] = 1  # touches the first only at a corner: one 8-connected island of 18 px
    a[14:18, 14:18] = 1  # a 16 px island
    out = fill_holes(a, max_area=17, grow=0)
    assert (out[5:11, 5:11] == a[5:11, 5:11]).all()  # the 18 px pair is the largest: kept
    assert out[14:18, 14:18].max() == 0
    out = fill_holes(a, max_area=9, grow=0)  # counted apart (4-connected), both 9 px squares would go
    assert (out[5:11, 5:11] == a[5:11, 5:11]).all()


def test_largest_island_survives():
    a = np.zeros((50, 50), np.float32)
    a[20:24, 20:24] = 1  # a small object far away is still the object
    assert np.array_equal(fill_holes(a, max_area=100), a)


def test_max_area_zero_is_a_no_op():
    a = _soft_disk(_soft_square(), 60, 50, 3, 0.0)
    assert np.array_equal(fill_holes(a, 0), a)


def test_small_components_counts():
    m = np.zeros((10, 10), bool)
    m[1:3, 1:3] = True
    m[5:10, 5:10] = True
    assert small_components(m, 4, eight=True).sum() == 4
    assert small_components(m, 4, eight=True, spare_largest=True).sum() == 4
    assert small_components(m, 100, eight=True, spare_largest=True).sum() == 4
    assert small_components(~m, 1000, eight=False, enclosed=True).sum() == 0  # background touches the border


def test_logits_grid():
    logits = np.full((64, 64), -8.0, np.float32)
    logits[10:50, 10:50] = 6.0
    logits[20:22, 20:22] = -3.0  # 4-cell hole
    logits[30:40, 30:40] = -5.0  # 100-cell hole: kept
    logits[55:57, 2:4] = 2.0  # 4-cell island
    out = fill_holes_logits(logits, max_area=8)
    assert (out[19:23, 19:23] >= 6.0).all()  # hole and its rim at the object's median positive logit
    assert (out[30:40, 30:40] == -5.0).all()
    assert (out[54:58, 1:5] <= -8.0).all()  # island and its rim at the median negative logit
    assert np.array_equal(out[:, 45:], logits[:, 45:])
