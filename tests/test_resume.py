"""Resuming a track job: frames already written by the same job are skipped, and results do not change."""

from __future__ import annotations

import json
import os

import numpy as np
from conftest import model_args, read_exr, run_cli


def _track(plate, checkpoint, out, *extra):
    return run_cli(
        "track",
        plate,
        "--frames",
        "1001-1008",
        "--point",
        "300,300@1004",
        "--colorspace",
        "ACEScg",
        "--out",
        out,
        "--report",
        os.path.join(os.path.dirname(out), "qc.json"),
        *extra,
        *model_args(checkpoint),
    )


def _mattes(folder):
    return {n: read_exr(os.path.join(folder, n))[0] for n in sorted(os.listdir(folder)) if n.endswith(".exr")}


def test_resume_skips_done_frames_and_matches_a_full_run(checkpoint, bedroom_plate, tmp_path):
    out = str(tmp_path / "m" / "main.####.exr")
    code, _, err = _track(bedroom_plate, checkpoint, out, "--matte-channels", "RGBA")
    assert code == 0, err
    full = _mattes(tmp_path / "m")
    assert len(full) == 8
    pixels, spec = read_exr(tmp_path / "m" / "main.1004.exr")
    assert spec.channelnames == ("R", "G", "B", "A")
    assert np.array_equal(pixels[..., 0], pixels[..., 3]) and np.array_equal(pixels[..., 1], pixels[..., 2])
    meta = {a.name: a.value for a in spec.extra_attribs}
    iou = float(meta["mattebridge/objectIoU"])  # the model's predicted IoU, kept from sam2's heads
    assert 0.0 <= iou <= 1.5 and "main" in json.loads(meta["mattebridge/objectIoUs"])
    report = (tmp_path / "m" / "qc.csv").read_text()

    # everything done: nothing is rewritten
    mtimes = {n: os.stat(tmp_path / "m" / n).st_mtime_ns for n in full}
    code, _, err = _track(bedroom_plate, checkpoint, out, "--matte-channels", "RGBA")
    assert code == 0 and "8 already done" in err, err
    assert mtimes == {n: os.stat(tmp_path / "m" / n).st_mtime_ns for n in full}
    assert (tmp_path / "m" / "qc.csv").read_text() == report  # the QC table comes back from the files

    # a killed run: two frames missing and a stale temp file -> only those are written, identical
    for name in ("main.1002.exr", "main.1007.exr"):
        os.unlink(tmp_path / "m" / name)
    (tmp_path / "m" / ".main.1007.exr.abc123.tmp.exr").write_bytes(b"half a file")
    code, _, err = _track(bedroom_plate, checkpoint, out, "--matte-channels", "RGBA")
    assert code == 0 and "6 already done" in err, err
    again = _mattes(tmp_path / "m")
    assert sorted(os.listdir(tmp_path / "m")) == sorted(list(full) + ["qc.csv", "qc.json"])
    for name in full:
        np.testing.assert_array_equal(again[name], full[name], err_msg=name)
    assert mtimes["main.1005.exr"] == os.stat(tmp_path / "m" / "main.1005.exr").st_mtime_ns

    # other prompts are another job: everything is recomputed; --force recomputes the same job
    code, _, err = _track(bedroom_plate, checkpoint, out, "--matte-channels", "RGBA", "--negative", "50,50@1004")
    assert code == 0 and "already done" not in err, err
    code, _, err = _track(bedroom_plate, checkpoint, out, "--matte-channels", "RGBA", "--force")
    assert code == 0 and "already done" not in err, err


def test_a_job_without_mattes_on_disk_recomputes_instead_of_resuming(mb_server, bedroom_plate, tmp_path):
    """Buffers and cut-outs but no `out`: a frame is reused from its matte files, so with none the second
    identical job computes its frames again (it crashed reading matte paths that do not exist)."""
    from mattebridge.core.wire.client import Client

    cut = str(tmp_path / "cut" / "hero.####.exr")
    with Client(mb_server.address, timeout=120) as client:
        clip = client.open_clip(bedroom_plate, "1001-1002", colorspace="ACEScg")
        clip.prompt(1001, "hero", points=[(300, 300, True)], edge="raw")
        for _ in range(2):
            run = clip.propagate(direction="forward", buffers=True, cutout=cut, edge="raw")
            results = list(run)
            assert run.summary["frames_written"] == 2 and [r.frame for r in results] == [1001, 1002], run.summary
            assert all(r.alpha["hero"].shape == (540, 960) for r in results)
        clip.close()
    assert sorted(os.listdir(tmp_path / "cut")) == ["hero.1001.exr", "hero.1002.exr"]
