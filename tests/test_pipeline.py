"""Around the model: the writer pool (same files, order, cancellation, errors), `--compile`, the click feature
cache, and one image-encoder forward per frame for every object."""

from __future__ import annotations

import os
import re
import time

import numpy as np
import pytest
from conftest import TEST_SIZE, model_args, run_cli

from mattebridge.core.errors import MatteBridgeError
from mattebridge.core.paths import UNCONFINED
from mattebridge.core.track.clip import prepare_clip
from mattebridge.core.track.job import TrackJob
from mattebridge.core.track.run import TrackRun
from mattebridge.core.wire.prompts import FramePrompt, Point, Prompts
from mattebridge.core.wire.sequence import FrameRange


@pytest.fixture(scope="module")
def model(checkpoint):
    from mattebridge.core.engine.models import load_model

    return load_model(checkpoint=checkpoint, config="sam2.1_hiera_t", image_size=TEST_SIZE, device="cpu")


def two_objects() -> Prompts:
    prompts = Prompts()
    prompts.add_point("hero", 1003, 300, 300, True)
    prompts.add_point("lamp", 1003, 700, 200, True)
    prompts.add_point("lamp", 1005, 690, 210, True)  # a correction, applied when the pass gets there
    return prompts


def track_run(model, plate, out, writers, frames="1001-1006", **fields) -> TrackRun:
    job = TrackJob(plate=plate, frames=FrameRange.parse(frames), colorspace="ACEScg", out=out, **fields)
    return TrackRun(job, prepare_clip(plate, job.frames, colorspace="ACEScg"), model, writers=writers)


def files(folder) -> dict:
    """Each file's bytes, with the time OpenEXR stamps in every header (capDate) blanked."""
    stamp = re.compile(rb"capDate\x00string\x00\x13\x00\x00\x00[0-9: ]{19}")
    return {n: stamp.sub(b"capDate", (folder / n).read_bytes()) for n in sorted(os.listdir(folder))}


def assert_only_complete_mattes(folder, key):
    """No temp file left, and every matte there is whole: its header says which job wrote it, its pixels read."""
    from mattebridge.core.image.matte_io import read_channels, read_metadata

    names = sorted(os.listdir(folder))
    assert not [n for n in names if n.endswith(".tmp.exr")], names
    for name in names:
        assert read_metadata(str(folder / name))["jobKey"] == key
        assert read_channels(str(folder / name), ["A"]).shape[-1] == 1


# --- the writer pool ---------------------------------------------------------------------------------------
def test_the_pool_writes_the_same_bytes_and_qc_in_the_same_order_as_one_writer(model, bedroom_plate, tmp_path):
    outcomes = {}
    for writers in (1, 4):
        folder = tmp_path / f"w{writers}"
        run = track_run(
            model,
            bedroom_plate,
            str(folder / "{object}.####.exr"),
            writers,
            prompts=two_objects(),
            report=str(folder / "qc.json"),
        )
        outcomes[writers] = [(o.frame, o.paths, o.scores, o.ious) for o in run]
        assert run.stats.frames_written == 6
    # the order of reports is the model's: forward from 1003, then back to 1001
    assert [f for f, *_ in outcomes[4]] == [1003, 1004, 1005, 1006, 1002, 1001]
    assert [(f, s, i) for f, _, s, i in outcomes[1]] == [(f, s, i) for f, _, s, i in outcomes[4]]
    one, pool = files(tmp_path / "w1"), files(tmp_path / "w4")
    assert len(one) == 2 * 6 + 2 and one == pool  # byte-equal EXRs (headers included), QC JSON and CSV


def test_the_feed_and_the_soft_edge_share_one_decode_of_each_frame(model, bedroom_plate, tmp_path, monkeypatch):
    import mattebridge.core.track.run as run_module
    from mattebridge.core.track.clip import SharedReads

    written, reads = {}, {}
    for keep in (None, 0):  # 0: nothing kept, the post decodes every frame again, as before
        if keep == 0:
            monkeypatch.setattr(run_module, "SharedReads", lambda read, _: SharedReads(read, 0))
        folder = tmp_path / f"keep{keep}"
        run = track_run(model, bedroom_plate, str(folder / "m.####.exr"), 1, prompts=two_objects(), edge="soft")
        run.clip.read = Counted(run.clip.read)
        run.post.read_plate = run.clip.read
        assert [o.frame for o in run] == [1003, 1004, 1005, 1006, 1002, 1001]
        reads[keep], written[keep] = sorted(f for (f,) in run.clip.read.calls), files(folder)
        assert run.post.read_plate == run.clip.read  # the run's end lets go of the plates it kept
    assert reads[None] == list(range(1001, 1007)) and reads[0] == sorted(2 * list(range(1001, 1007)))
    assert written[None] == written[0]  # the same bytes


def test_a_cpu_run_keeps_the_models_torch_threads(model, bedroom_plate, tmp_path):
    """The model keeps every thread beside the writers: at the default 1024 px input the model is most of a frame's
    work, and 1080p end to end on 2 cores ran 0.14 frames/s with one thread against 0.23 with two (RESULTS.md)."""
    import torch

    before, seen = torch.get_num_threads(), []
    prompts = Prompts()
    prompts.add_point("hero", 1001, 300, 300, True)
    torch.set_num_threads(2)
    try:
        for edge in ("soft", "raw"):
            out = str(tmp_path / f"{edge}.####.exr")
            for _ in track_run(model, bedroom_plate, out, 1, "1001-1002", prompts=prompts, edge=edge):
                seen.append(torch.get_num_threads())
        assert seen == [2, 2, 2, 2] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_shared_reads_keep_at_most_their_bound():
    from mattebridge.core.track.clip import SharedReads

    read = Counted(lambda f: f"plate {f}")
    shared = SharedReads(read, 2)
    for f in (1, 2, 3):
        shared.read(f)
    assert list(shared._plates) == [2, 3]  # the oldest dropped
    assert shared.take(3) == "plate 3" and shared.take(1) == "plate 1"  # kept, then decoded again
    assert [f for (f,) in read.calls] == [1, 2, 3, 1] and list(shared._plates) == [2]


def test_a_run_closed_mid_way_leaves_only_complete_files_and_resumes(model, bedroom_plate, tmp_path, monkeypatch):
    from mattebridge.core.image import matte_io
    from mattebridge.core.track import post

    def slow_write(*args, **kwargs):  # writers slower than the model: frames are in flight when it closes
        time.sleep(0.3)
        matte_io.write_matte(*args, **kwargs)

    monkeypatch.setattr(post, "write_matte", slow_write)
    out = str(tmp_path / "m" / "hero.####.exr")
    prompts = Prompts()
    prompts.add_point("hero", 1001, 300, 300, True)
    run = track_run(model, bedroom_plate, out, 4, frames="1001-1010", prompts=prompts, direction="forward")
    first = next(run)
    assert first.frame == 1001 and os.path.exists(first.paths["hero"])
    run.close()
    written = sorted(os.listdir(tmp_path / "m"))
    assert 1 <= len(written) < 10
    assert_only_complete_mattes(tmp_path / "m", run.key)
    time.sleep(0.5)  # nothing is still being written after close
    assert sorted(os.listdir(tmp_path / "m")) == written

    monkeypatch.undo()
    again = track_run(model, bedroom_plate, out, 4, frames="1001-1010", prompts=prompts, direction="forward")
    skipped = [o.frame for o in again if o.skipped]
    assert skipped == [int(n.split(".")[1]) for n in written]  # every file it left counts as done
    assert again.stats.frames_written == 10 - len(written)


def test_a_write_error_stops_the_run_at_its_frame_in_one_line(checkpoint, bedroom_plate, tmp_path):
    out = tmp_path / "m"
    out.mkdir()
    (out / "1004").write_text("a file where frame 1004's folder would be")
    code, _, err = run_cli(
        "track",
        bedroom_plate,
        "--frames",
        "1001-1008",
        "--point",
        "300,300@1001",
        "--direction",
        "forward",
        "--colorspace",
        "ACEScg",
        "--edge",
        "raw",
        "--out",
        str(out / "####" / "hero.exr"),
        *model_args(checkpoint),
    )
    assert code == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"mattebridge: error: {out / '1004' / 'hero.exr'}: cannot create folder"), err
    assert "Traceback" not in err
    from mattebridge.core.image.matte_io import read_metadata

    key = read_metadata(str(out / "1001" / "hero.exr"))["jobKey"]
    for frame in (1001, 1002, 1003):  # the frames before it are written
        assert os.listdir(out / str(frame)) == ["hero.exr"]
    for frame in [1001, 1002, 1003] + [f for f in range(1005, 1009) if (out / str(f)).exists()]:
        assert_only_complete_mattes(out / str(frame), key)  # later ones the writers had started: whole too


def test_a_folder_without_write_permission_is_one_line_and_no_temp_file(tmp_path, monkeypatch):
    from mattebridge.core.image.matte_io import write_matte
    from mattebridge.core.image.plate import Geometry

    def refused(*args, **kwargs):  # what mkstemp raises in a folder this user may not write (tests run as root)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("tempfile.mkstemp", refused)
    path = tmp_path / "m.exr"
    with pytest.raises(MatteBridgeError, match=r"m\.exr: cannot write \(Permission denied\)$"):
        write_matte(str(path), {"A": np.zeros((4, 4), np.float32)}, Geometry((0, 0, 4, 4), (0, 0, 4, 4)), {})
    assert os.listdir(tmp_path) == []


# --- --compile ---------------------------------------------------------------------------------------------
def test_compile_is_refused_on_a_cpu_in_one_line(checkpoint, bedroom_plate, tmp_path):
    code, _, err = run_cli(
        "track",
        bedroom_plate,
        "--frames",
        "1001",
        "--point",
        "300,300",
        "--colorspace",
        "ACEScg",
        "--out",
        str(tmp_path / "m.####.exr"),
        "--compile",
        *model_args(checkpoint),
    )
    assert code == 2
    assert err.strip() == (
        "mattebridge: error: --compile: needs a CUDA device (this run's device is cpu); run without --compile"
    )
    assert not (tmp_path / "m.1001.exr").exists()


def test_compile_reaches_the_model_build_and_needs_triton(monkeypatch):
    import torch

    from mattebridge.cli.main import build_parser
    from mattebridge.core.engine.models import build_model, check_compile

    for command in (["track", "p.####.exr", "--frames", "1", "--out", "m.####.exr"], ["serve"]):
        assert build_parser().parse_args(command + ["--compile"]).compile
        assert not build_parser().parse_args(command).compile
    # sam2's own compiled predictor: its components' forwards wrapped by torch.compile (built on first use)
    compiled = build_model("sam2.1_hiera_t", TEST_SIZE, compile=True)
    assert type(compiled).__name__ == "SAM2VideoPredictorVOS"
    assert compiled.fill_hole_area == 0 and compiled.max_cond_frames_in_attn == 8  # our overrides kept
    assert type(build_model("sam2.1_hiera_t", TEST_SIZE)).__name__ == "SAM2VideoPredictor"
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(MatteBridgeError, match=r"^--compile: needs Triton .*; run without --compile$"):
        check_compile(torch.device("cuda"))


# --- clicks: the feature cache -----------------------------------------------------------------------------
class Counted:
    def __init__(self, fn):
        self.fn, self.calls = fn, []

    def __call__(self, *args):
        self.calls.append(args)
        return self.fn(*args)


def open_test_clip(plate, features=None):
    from mattebridge.server.clips import ServerClip

    clip = ServerClip("1", b"me", prepare_clip(plate, FrameRange(1001, 1006), colorspace="ACEScg"), UNCONFINED)
    if features is not None:
        clip.features = features
    clip.prepared.read = Counted(clip.prepared.read)
    return clip


def click(x=300.0, y=300.0) -> FramePrompt:
    return FramePrompt(points=[Point(x, y, True)])


@pytest.mark.parametrize("edge", ["soft", "raw"])
def test_a_second_click_on_a_frame_runs_no_encoder_and_reads_no_plate(model, bedroom_plate, monkeypatch, edge):
    encoder = Counted(model.predictor.forward_image)
    monkeypatch.setattr(model.predictor, "forward_image", encoder)
    clip = open_test_clip(bedroom_plate)
    try:
        first = clip.preview(model, 2, "hero", click(), edge)
        assert len(encoder.calls) == 1
        assert [f for (f,) in clip.prepared.read.calls].count(1003) == 1  # the model and the edge share one read
        encoder.calls.clear()
        clip.prepared.read.calls.clear()
        again = clip.preview(model, 2, "hero", click(), edge)
        moved = clip.preview(model, 2, "hero", click(320.0, 310.0), edge)
        assert encoder.calls == [] and clip.prepared.read.calls == []
        assert np.array_equal(first[0], again[0]) and first[2:] == again[2:]  # the same click, the same matte
        assert not np.array_equal(first[0], moved[0])
        clip.invalidate()  # new pixels (put_frame): the frame is encoded again
        clip.preview(model, 2, "hero", click(), edge)
        assert len(encoder.calls) == 1 and len(clip.features) == 1
    finally:
        clip.close()
    assert len(clip.features) == 0  # a closed clip's features are freed


def test_the_feature_cache_drops_the_least_recently_clicked_past_its_budget(model, bedroom_plate):
    from mattebridge.server.clips import FeatureCache, feature_bytes

    clip = open_test_clip(bedroom_plate)
    clip.preview(model, 0, "hero", click(), "raw")
    size = feature_bytes(clip.features.get(("1", 0)))
    # the image, its backbone levels and their position encodings, at 256 px (~1/16 of the 1024 px figure)
    assert 4 << 20 < size < 16 << 20
    clip.close()

    clip = open_test_clip(bedroom_plate, FeatureCache(int(2.5 * size)))
    try:
        for index in (0, 1, 0, 2):  # 0 clicked again: 1 is now the least recent
            clip.preview(model, index, "hero", click(), "raw")
        assert [clip.features.get(("1", i)) is not None for i in range(3)] == [True, False, True]
        assert clip.features.bytes == 2 * size <= clip.features.budget
        tiny = FeatureCache(size - 1)
        tiny.put(("1", 0), clip.features.get(("1", 0)))
        assert len(tiny) == 0 and tiny.bytes == 0  # a frame larger than the budget is not kept
    finally:
        clip.close()


def test_every_object_shares_one_image_encoder_forward_per_frame(model, bedroom_plate, monkeypatch, tmp_path):
    encoder = Counted(model.predictor.forward_image)
    monkeypatch.setattr(model.predictor, "forward_image", encoder)
    prompts = Prompts()
    prompts.add_point("hero", 1001, 300, 300, True)
    prompts.add_point("lamp", 1001, 700, 200, True)
    run = track_run(
        model, bedroom_plate, str(tmp_path / "{object}.####.exr"), 2, "1001-1004", prompts=prompts, edge="raw"
    )
    assert [o.frame for o in run] == [1001, 1002, 1003, 1004]
    assert len(encoder.calls) == 4


def test_half_rounding_is_numpys():
    from mattebridge.core.image.half import as_half

    rng = np.random.default_rng(7)
    bits = rng.integers(0, 2**32, 2_000_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    near = np.float32(2.0) ** rng.integers(-30, 17, 200_000).astype(np.float32) * rng.random(200_000, np.float32)
    edges = np.array([0, -0.0, 2**-25, 2**-24, 6.1e-5, 65504, 65520, np.inf, -np.inf, 1 - 2**-12], np.float32)
    sigmoid = (1 / (1 + np.exp(-np.linspace(-60, 60, 10_001)))).astype(np.float32)  # a matte's values
    values = np.concatenate([bits[~np.isnan(bits)], near, edges, sigmoid])
    assert values.dtype == np.float32
    with np.errstate(over="ignore"):
        want = values.astype(np.float16).astype(np.float32)
    got = as_half(values)
    assert got.dtype == np.float32 and np.array_equal(got.view(np.uint32), want.view(np.uint32))  # bit for bit
