"""`--edge matte` (issue #13): trimap, tiled band inference, foreground colour, the track command end to end.
No downloads: a tiny random-initialised ViTMatte saved with save_pretrained and loaded through the real path."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, model_args, read_exr, run_cli

from mattebridge.core.image.plate import Geometry
from mattebridge.core.matte.matting import BATCH, matte_band, memory_budget
from mattebridge.core.matte.trimap import UNCERTAIN, motion_cells, trimap

sys.path.insert(0, str(REPO / "bench"))
import matting_quality as mq  # noqa: E402

torch = pytest.importorskip("torch")


def _disc(h, w, r, cx=None, cy=None):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    return np.hypot(xx - (cx or w / 2), yy - (cy or h / 2)) - r


# --- trimap -----------------------------------------------------------------------------------------
def test_trimap_width_follows_uncertainty_resolution_and_motion():
    d = _disc(256, 256, 80)
    sure, unsure = trimap(-2.0 * d, cell=8), trimap(-0.5 * d, cell=8)  # logits: steep vs shallow ramp
    assert set(np.unique(sure)) == {0.0, 0.5, 1.0}
    width = lambda t: (t == 0.5).sum() / (2 * np.pi * 80)  # noqa: E731  band pixels per unit of contour
    assert width(unsure) > width(sure) + 12  # |logit| < 5.5: 5.5 px wide vs 22 px, each + a cell of dilation
    # the band covers every pixel whose logit is unsure, and the definite regions keep the logits' sign
    assert np.all(sure[np.abs(-2.0 * d) < UNCERTAIN] == 0.5)
    assert np.all(sure[(sure != 0.5) & (d < 0)] == 1) and np.all(sure[(sure != 0.5) & (d > 0)] == 0)
    # a coarser model (more plate pixels a logit cell): wider
    assert width(trimap(-2.0 * d, cell=16)) > width(sure) + 3
    # motion: a disc that moved 20 px to the right widens the band where it moved, not where it stood still
    grid = lambda dx: (-1.5 * _disc(32, 32, 10, 16 + dx, 16)).astype(np.float32)  # noqa: E731  8 px cells
    moved = motion_cells(grid(2.5), grid(0.0))
    assert moved[16, 27] > 1.5 and moved[16, 5] > 1.5  # leading and trailing edges
    assert moved[5, 16] < 1 and moved[27, 16] < 1  # top and bottom: the edge slides along itself
    assert not motion_cells(grid(0.0), grid(0.0)).any() and not motion_cells(grid(0.0), None).any()
    up = -1.5 * _disc(256, 256, 80, 128 + 20, 128) / 8
    motion = np.kron(moved, np.ones((8, 8), np.float32)) * 8
    still, moving = trimap(up, 8), trimap(up, 8, motion)
    band = lambda t, row: np.count_nonzero(t[row] == 0.5)  # noqa: E731
    top = lambda t: np.count_nonzero(t[:128, 148] == 0.5)  # noqa: E731
    side_gain, top_gain = band(moving, 128) - band(still, 128), top(moving) - top(still)
    # across the leading and trailing edges: wider by about the motion (20 px each); the top of the disc,
    # sliding along itself, gains only what its neighbours' widening reaches
    assert side_gain >= 2 * 16 and side_gain > 2 * top_gain, (side_gain, top_gain)


# --- tiled band inference ---------------------------------------------------------------------------
def _local_model(calls):
    """A stand-in whose output at a pixel depends on a 5x5 neighbourhood only (a 2-layer 3x3 conv)."""
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3, padding=1), torch.nn.Tanh(), torch.nn.Conv2d(8, 1, 3, padding=1))

    def predict(rgb, tri):
        calls.append(rgb.shape[0])
        return torch.sigmoid(net(torch.cat([rgb, tri], 1)))[:, 0]

    return predict


def _scene(h=300, w=420, seed=0):
    rng = np.random.default_rng(seed)
    d = _disc(h, w, 60, 110, 140)
    plate = rng.uniform(0, 1.4, (h, w, 3)).astype(np.float32)
    base = (1 / (1 + np.exp(np.clip(d / 3, -60, 60)))).astype(np.float32)
    return base, trimap(-d / 3 * 4, cell=8), plate


def test_tiles_blend_to_the_whole_image_and_only_band_tiles_run():
    base, tri, plate = _scene()
    calls = []
    predict = _local_model(calls)
    whole, one = matte_band(base, tri, plate, lambda x: x, predict, tile=1024)
    tiled, stats = matte_band(base, tri, plate, lambda x: x, predict, tile=192, overlap=32, batch=3)
    assert one.run == 1 and stats.tiles == 2 * 3  # rows start at 0, 108; columns at 0, 160, 228
    # the disc's band misses the right-hand column's tiles: never run (counted at the model)
    unknown = tri == 0.5
    assert not unknown[:, 228:].any() and unknown[:, 160:].any()
    assert stats.run == 4 and sum(calls[1:]) == 4
    # the model sees 5x5 pixels, the overlap is 32: blending with weights that sum to 1 is the whole image's
    assert np.abs(tiled - whole).max() < 1e-5
    assert np.array_equal(tiled[~unknown], base[~unknown])  # outside the band: the tracked matte, untouched
    calls.clear()
    _, none = matte_band(base, np.round(base), plate, lambda x: x, predict, tile=192, overlap=32)
    assert none.run == 0 and not calls


def test_vitmatte_tiled_vs_whole_image(tiny_vitmatte):
    """ViTMatte attends globally inside a tile, so tiles cannot equal the whole image exactly; with 64 px of
    overlap and the cross-fade the difference stays small (stated: mean < 0.02, 99th percentile < 0.1)."""
    from mattebridge.core.engine.matting_model import load_matting_model

    m = load_matting_model("x", tiny_vitmatte)
    base, tri, plate = _scene(256, 320)
    whole, _ = matte_band(base, tri, plate, lambda x: x, m.predict, tile=512)
    tiled, stats = matte_band(base, tri, plate, lambda x: x, m.predict, tile=192, overlap=64)
    band = tri == 0.5
    diff = np.abs(tiled - whole)[band]
    assert stats.run > 1 and whole[band].std() > 0.01  # a real comparison: several tiles, a varying output
    assert diff.mean() < 0.02 and np.percentile(diff, 99) < 0.1, (diff.mean(), np.percentile(diff, 99))


def test_memory_at_4k_stays_under_the_budget():
    """Peak RSS of the tiled pass on a 4096 x 2160 frame (inputs made first), in a fresh process."""
    code = """
import numpy as np, torch
from mattebridge.core.matte.matting import matte_band
from mattebridge.core.matte.trimap import trimap
h, w = 2160, 4096
yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
d = np.hypot(xx - 2048, yy - 1080) - 900
del yy, xx
base = (1 / (1 + np.exp(d / 8))).astype(np.float32)
tri = trimap(-d / 2, cell=16)
plate = np.random.default_rng(0).uniform(0, 1, (h, w, 3)).astype(np.float32)
del d
net = torch.nn.Conv2d(4, 1, 3, padding=1)
predict = lambda rgb, tri: torch.sigmoid(net(torch.cat([rgb, tri], 1)))[:, 0]
matte_band(base[:512, :512], tri[:512, :512], plate[:512, :512], lambda x: x, predict)  # torch's own warm-up
def rss(field):
    return int([l for l in open("/proc/self/status") if l.startswith(field)][0].split()[1]) * 1024
open("/proc/self/clear_refs", "w").write("5")  # resets the peak (VmHWM) to now
before = rss("VmRSS:")
out, stats = matte_band(base, tri, plate, lambda x: x, predict)
print(rss("VmHWM:") - before, stats.run, stats.tiles)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    peak, run, tiles = map(int, proc.stdout.split())
    budget = memory_budget(2160, 4096, 512, BATCH)
    assert 0 < run < tiles  # the disc's edge: some tiles, not all
    assert peak < budget, f"peak {peak / 2**20:.0f} MiB over the budget {budget / 2**20:.0f} MiB"


# --- the pipeline with an oracle ------------------------------------------------------------------
FG, BG = np.array([0.85, 0.55, 0.25], np.float32), np.array([0.1, 0.3, 0.65], np.float32)


def _oracle(rgb, tri):
    """A matting model that is exact on a two-colour composite: alpha from the display RGB it is given (the
    display below is a 1/2.2 power; a wrong channel order, a missed display or a misplaced tile breaks it)."""
    lin = rgb.clamp(min=0) ** 2.2
    f, b = torch.as_tensor(FG)[:, None, None], torch.as_tensor(BG)[:, None, None]
    return (((lin - b) * (f - b)).sum(1) / ((f - b) ** 2).sum()).clamp(0, 1)


def test_oracle_reproduces_hair_and_24px_motion_blur_within_1_255():
    from mattebridge.core.matte.alpha import matted_alpha

    blob = mq._blob(256, 256, 0.3 * mq.SIZE, seed=1)
    cases = {"hair": mq._strands(blob, 256, 256, 0.3 * mq.SIZE, count=40, seed=2), "blur24": mq._motion_blur(blob, 24)}
    geometry = Geometry((0, 0, mq.SIZE, mq.SIZE), (0, 0, mq.SIZE, mq.SIZE), 1.0)
    for name, gt in cases.items():
        plate = gt[..., None] * FG + (1 - gt[..., None]) * BG
        logits = mq.model_logits(gt, np.random.default_rng(0))
        alpha, stats = matted_alpha(logits, geometry, plate, lambda x: x ** (1 / 2.2), _oracle, tile=160)
        err = np.abs(alpha - gt)
        assert err.max() < 1 / 255, (name, err.max(), np.unravel_index(err.argmax(), err.shape))
        assert 0 < stats.run <= stats.tiles
        # without the matting pass the tracked matte is far off: the test measures the band, not the base
        assert np.abs(mq.sigmoid(mq.upsample(logits)) - gt).max() > 0.3


# --- foreground colour ------------------------------------------------------------------------------
def test_foreground_estimation_removes_background_spill():
    from mattebridge.core.matte.foreground import estimate_foreground

    blob = mq._blob(256, 256, 0.3 * mq.SIZE, seed=1)
    gt = mq._motion_blur(mq._strands(blob, 256, 256, 0.3 * mq.SIZE, count=40, seed=2), 6)
    fg = mq._texture(10, (0.55, 0.32, 0.2), 0.35) * 3  # highlights above 1: scene-linear
    bg = np.broadcast_to(np.array([0.05, 0.6, 0.1], np.float32), fg.shape)  # a green screen's spill
    plate = gt[..., None] * fg + (1 - gt[..., None]) * bg
    soft = (gt > 0.02) & (gt < 0.98)
    truth = (fg * gt[..., None])[soft]
    naive = np.abs((plate * gt[..., None])[soft] - truth).mean()  # alpha x plate: the background's spill stays
    est = np.abs((estimate_foreground(plate, gt, tile=192) * gt[..., None])[soft] - truth).mean()
    assert est < 0.5 * naive, (est, naive)
    out = estimate_foreground(plate, gt, tile=192)
    assert np.array_equal(out[gt >= 1], plate[gt >= 1])  # solid foreground: the plate itself


# --- end to end -------------------------------------------------------------------------------------
def test_track_edge_matte_end_to_end(checkpoint, bedroom_plate, tiny_vitmatte, tmp_path):
    out, fgd = tmp_path / "m" / "hero.####.exr", tmp_path / "fg" / "hero.####.exr"
    args = ["track", bedroom_plate, "--frames", "1001-1003", "--point", "300,300", "--colorspace", "ACEScg"]
    code, _, err = run_cli(
        *args,
        "--out",
        out,
        "--edge",
        "matte",
        "--matte-model",
        tiny_vitmatte,
        "--matte-tile",
        "256",
        "--foreground",
        fgd,
        *model_args(checkpoint),
    )
    assert code == 0, err
    pixels, spec = read_exr(tmp_path / "m" / "hero.1002.exr")
    assert spec.channelnames == ("A",) and 0 <= pixels.min() and pixels.max() <= 1
    meta = {a.name: a.value for a in spec.extra_attribs}
    assert meta["mattebridge/edge"] == "matte" and meta["mattebridge/matteModel"] == "tiny-vitmatte"
    rgba, spec = read_exr(tmp_path / "fg" / "hero.1002.exr")
    assert spec.channelnames == ("R", "G", "B", "A")
    assert np.array_equal(rgba[..., 3], pixels[..., 0])
    plate, _ = read_exr(bedroom_plate.replace("####", "1002"))
    assert rgba[..., :3].std() > 0 and rgba[..., :3].min() >= 0  # premultiplied: colour within alpha x the plate's
    assert np.all(rgba[..., :3] <= rgba[..., 3:] * plate[..., :3].max() * 1.01 + 1e-3)
    # the default model is not downloaded here: one line naming the command that fetches it
    code, _, err = run_cli(
        *args,
        "--out",
        tmp_path / "x.####.exr",
        "--edge",
        "matte",
        *model_args(checkpoint),
        env={"MATTEBRIDGE_MODELS": str(tmp_path / "empty")},
    )
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "mattebridge models download vitmatte-small-composition-1k" in err and "--matte-model" in err
    assert not os.path.exists(tmp_path / "x.1001.exr")
    # the foreground output is confined like every output: never onto an input
    code, _, err = run_cli(
        *args,
        "--out",
        tmp_path / "y.####.exr",
        "--foreground",
        bedroom_plate,
        "--edge",
        "matte",
        "--matte-model",
        tiny_vitmatte,
        *model_args(checkpoint),
    )
    assert code == 2 and "--foreground" in err and len(err.strip().splitlines()) == 1


def test_server_propagation_with_edge_matte(checkpoint, bedroom_plate, tiny_vitmatte, tmp_path):
    """The server loads the matting model on its tracker's device (a TrackRun of its own, not `run_track`): the
    catalogue's default name, present in the model cache, through a real server process."""
    import shutil

    from conftest import ServerProcess

    from mattebridge.core.engine import catalog
    from mattebridge.core.engine.matting_model import DEFAULT_MATTE_MODEL
    from mattebridge.core.wire.client import Client

    cache = tmp_path / "models"
    folder = cache / DEFAULT_MATTE_MODEL
    shutil.copytree(tiny_vitmatte, folder)
    catalog.write_manifest(str(folder), catalog.entry(DEFAULT_MATTE_MODEL).repo, "0" * 40)
    server = ServerProcess(checkpoint, tmp_path, env={"MATTEBRIDGE_MODELS": str(cache)})
    try:
        with Client(server.address, timeout=120) as client:
            clip = client.open_clip(bedroom_plate, "1001-1002", colorspace="ACEScg")
            clip.prompt(1001, "hero", points=[(300, 300, True)], edge="raw")
            run = clip.propagate(direction="forward", out=str(tmp_path / "m" / "{object}.####.exr"), edge="matte")
            results = list(run)
            assert [r.frame for r in results] == [1001, 1002] and run.summary["frames_written"] == 2, run.summary
            pixels, spec = read_exr(results[1].paths["hero"])
            meta = {a.name: a.value for a in spec.extra_attribs}
            assert meta["mattebridge/edge"] == "matte" and meta["mattebridge/matteModel"] == DEFAULT_MATTE_MODEL
            assert 0 <= pixels.min() and pixels.max() <= 1
    finally:
        server.stop()


def test_the_alpha_head_runs_in_float32_under_autocast(tiny_vitmatte):
    """On CUDA the model runs in bf16 autocast; its alpha must not come out in bf16's 1/256 steps near 1 (CPU
    autocast stands in for CUDA's here: the same dtype rules)."""
    from mattebridge.core.engine.matting_model import load_matting_model

    model = load_matting_model("tiny", tiny_vitmatte, "cpu").model
    rgb = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(0)) * 2 - 1  # normalised, as predict's
    x = torch.cat([rgb, (torch.arange(128.0) / 127).expand(1, 1, 128, 128)], 1)  # a trimap ramp: every alpha level
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        alphas = model(pixel_values=x).alphas
    with torch.no_grad():
        reference = model(pixel_values=x).alphas
    assert alphas.dtype == torch.float32
    upper = alphas[(alphas > 0.5) & (alphas < 1)]
    assert upper.numel() > 1000 and torch.unique(upper).numel() > 128  # bf16 holds 128 values in [0.5, 1)
    assert (alphas - reference).abs().max() < 0.1  # the same model, the body in bf16
