"""`mattebridge track` as a real process: mattes in the plate's geometry, metadata, errors."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from conftest import model_args, read_exr, run_cli, write_exr

from mattebridge.core.wire.prompts import Prompts


def listing(folder):
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def test_track_real_footage_two_objects(checkpoint, bedroom_plate, tmp_path):
    prompts = Prompts()
    prompts.add_point("left_child", 1003, 300, 300)
    prompts.add_point("left_child", 1008, 80, 60, positive=False)  # a correction, later
    prompts.set_box("right_child", 1006, (550, 120, 800, 540))
    (tmp_path / "prompts.json").write_text(prompts.dumps())
    out = tmp_path / "mattes" / "{object}.####.exr"
    code, _, err = run_cli(
        "track",
        bedroom_plate,
        "--frames",
        "1001-1010",
        "--prompts",
        tmp_path / "prompts.json",
        "--colorspace",
        "ACEScg",
        "--out",
        out,
        *model_args(checkpoint),
    )
    assert code == 0, err
    assert "Traceback" not in err and "ETA" in err
    names = listing(tmp_path / "mattes")
    assert names == sorted(f"{o}.{f}.exr" for o in ("left_child", "right_child") for f in range(1001, 1011))
    pixels, spec = read_exr(tmp_path / "mattes" / "left_child.1005.exr")
    assert spec.channelnames == ("A",) and str(spec.format) == "half"
    assert (spec.width, spec.height, spec.full_width, spec.full_height) == (960, 540, 960, 540)
    assert spec.get_string_attribute("compression") == "zip"
    assert 0 <= pixels.min() and pixels.max() <= 1 and pixels.std() > 0
    meta = {a.name: a.value for a in spec.extra_attribs}
    assert meta["mattebridge/model"] == "random_tiny.pt"
    assert len(meta["mattebridge/checkpointSHA256"]) == 64
    assert meta["mattebridge/colorspace"] == "ACEScg" and meta["mattebridge/config"] == "ocio://studio-config-latest"
    assert Prompts.from_json(json.loads(meta["mattebridge/prompts"])).to_json() == prompts.to_json()
    assert not [n for n in names if n.startswith(".")]


@pytest.mark.parametrize(
    "display,data,aspect",
    [
        ((0, 0, 96, 64), (16, 8, 48, 40), 1.0),  # data window inside the display window
        ((0, 0, 96, 64), (-16, -8, 128, 80), 1.0),  # overscan: larger than the display window
        ((0, 0, 96, 64), (40, 30, 80, 50), 1.0),  # offset, partly outside
        ((-20, -10, 96, 64), (-30, -12, 90, 60), 2.0),  # negative origins, anamorphic
    ],
)
def test_mask_prompt_round_trips_in_plate_geometry(checkpoint, tmp_path, display, data, aspect):
    dx, dy, dw, dh = display
    x, y, w, h = data
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[y : y + h, x : x + w] + 0.5
    disc = (((xx - dx - dw * 0.45) / (dw * 0.3)) ** 2 + ((yy - dy - dh * 0.5) / (dh * 0.35)) ** 2 <= 1).astype(
        np.float32
    )
    for f in (1, 2):
        write_exr(
            tmp_path / f"plate.{f:04d}.exr",
            {c: rng.random((h, w)).astype(np.float32) for c in "RGB"},
            display=display,
            data=data,
            pixel_aspect=aspect,
        )
    write_exr(tmp_path / "mask.exr", {"A": disc}, display=display, data=data, pixel_aspect=aspect)
    code, _, err = run_cli(
        "track",
        tmp_path / "plate.%04d.exr",
        "--frames",
        "1-2",
        "--mask",
        f"{tmp_path / 'mask.exr'}@1",
        "--out",
        tmp_path / "out" / "m.####.exr",
        "--edge",
        "hard",
        "--colorspace",
        "ACEScg",
        *model_args(checkpoint),
    )
    assert code == 0, err
    alpha, spec = read_exr(tmp_path / "out" / "m.0001.exr")
    assert (spec.x, spec.y, spec.width, spec.height) == data
    assert (spec.full_x, spec.full_y, spec.full_width, spec.full_height) == display
    assert spec.get_float_attribute("PixelAspectRatio") == aspect
    # inside the display window the matte is the mask (to the model's 1/4-resolution edge)
    inside = (xx >= dx) & (xx < dx + dw) & (yy >= dy) & (yy < dy + dh)
    got, want = alpha[..., 0][inside] > 0.5, disc[inside] > 0.5
    iou = (got & want).sum() / (got | want).sum()
    assert iou > 0.9, iou


def test_error_cases_are_one_line_and_leave_nothing(checkpoint, bedroom_plate, tmp_path):
    out = tmp_path / "out" / "m.####.exr"
    base = ["--out", out, "--colorspace", "ACEScg", *model_args(checkpoint)]
    plate_dir = os.path.dirname(bedroom_plate)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for f in (1001, 1002):
        os.symlink(os.path.join(plate_dir, f"plate.{f}.exr"), corrupt / f"plate.{f}.exr")
    (corrupt / "plate.1003.exr").write_bytes(b"this is not an image")
    bad_ckpt = tmp_path / "bad.pt"
    bad_ckpt.write_bytes(b"\x80\x04garbage")
    wrong_ckpt = tmp_path / "wrong.pt"
    import torch

    torch.save({"model": {"image_encoder.trunk.pos_embed": torch.zeros(3)}}, wrong_ckpt)

    class Evil:  # a pickle that would run code: weights_only refuses it
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    evil = tmp_path / "evil.pt"
    torch.save({"model": Evil()}, evil)

    cases = [
        (["--frames", "1001-1030", "--point", "10,10"], "plate.1021.exr: frame 1021 is missing"),
        (
            [str(corrupt / "plate.####.exr"), "--frames", "1001-1003", "--point", "10,10"],
            "plate.1003.exr: unreadable or corrupt",
        ),
        (["--frames", "1001-1003", "--point", "10,10", "--colorspace", "ACEScgx"], "'ACEScgx' is not in"),
        (["--frames", "1001-1003", "--point", "10,10", "--view", "sRGB - Display/Nope"], "view 'Nope'"),
        (["--frames", "1001-1003", "--point", "2000,10"], "point 2000,10 is outside the image"),
        (
            ["--frames", "1001-1003", "--point", "10,10", "--point", "10,10@1200"],
            "frame 1200: frame is outside the range 1001-1003",
        ),
        (["--frames", "1003-1001", "--point", "10,10"], "range '1003-1001' is reversed"),
        (["--frames", "", "--point", "10,10"], "--frames: cannot read ''"),
        (["--frames", "1001-1003"], "no prompts"),
        (["--frames", "1001-1003", "--point", "10,x"], "--point '10,x'"),
        (
            ["--frames", "1001-1003", "--point", "10,10", "--checkpoint", bad_ckpt],
            "bad.pt: not a loadable weights-only checkpoint",
        ),
        (["--frames", "1001-1003", "--point", "10,10", "--checkpoint", wrong_ckpt], "wrong.pt: weights do not fit"),
        (
            ["--frames", "1001-1003", "--point", "10,10", "--checkpoint", evil],
            "evil.pt: not a loadable weights-only checkpoint",
        ),
        (
            ["--frames", "1001-1003", "--point", "10,10", "--checkpoint", tmp_path / "none.pt"],
            "none.pt: checkpoint not found",
        ),
        (["--frames", "1001-1003", "--point", "10,10", "--fill-holes", "-5"], "--fill-holes -5: expected a number"),
        (["--frames", "1001-1003", "--point", "10,10", "--image-size", "0"], "--image-size 0: must be a multiple"),
        (  # the server refused these already; the command line checks the same job
            [
                "--frames",
                "1001-1003",
                "--point",
                "10,10",
                "--layout",
                "layers",
                "--out",
                tmp_path / "out" / "{object}.#.exr",
            ],
            "{object} only names the files layout's mattes",
        ),
        (
            ["--frames", "1001-1003", "--point", "10,10", "--cutout", tmp_path / "out" / "c.{object}.#.exr"],
            "--cutout",
        ),
    ]
    for extra, message in cases:
        args = list(extra)
        plate = args.pop(0) if args and args[0].endswith(".exr") else bedroom_plate
        # model args first, so a case's own --checkpoint/--colorspace/--view wins (argparse keeps the last)
        code, stdout, err = run_cli("track", plate, *base, *args)
        lines = err.strip().splitlines()
        assert code != 0, (extra, err)
        assert len(lines) == 1 and lines[0].startswith("mattebridge: error: "), (extra, err)
        assert message in lines[0], (extra, lines[0])
        assert listing(tmp_path / "out") == [], (extra, listing(tmp_path / "out"))
        assert "pwned" not in stdout


def test_truncated_frame_mid_shot_leaves_only_complete_mattes(checkpoint, bedroom_plate, tmp_path):
    plate_dir = os.path.dirname(bedroom_plate)
    shot = tmp_path / "shot"
    shot.mkdir()
    for f in range(1001, 1007):
        data = open(os.path.join(plate_dir, f"plate.{f}.exr"), "rb").read()
        (shot / f"plate.{f}.exr").write_bytes(data[: len(data) // 2] if f == 1005 else data)
    out = tmp_path / "out" / "m.####.exr"
    code, _, err = run_cli(
        "track",
        shot / "plate.####.exr",
        "--frames",
        "1001-1006",
        "--point",
        "300,300",
        "--direction",
        "forward",
        "--out",
        out,
        "--colorspace",
        "ACEScg",
        *model_args(checkpoint),
    )
    lines = err.strip().splitlines()
    assert code != 0 and lines[-1].startswith("mattebridge: error: ") and "plate.1005.exr" in lines[-1], err
    assert "Traceback" not in err
    for name in listing(tmp_path / "out"):
        assert not name.startswith("."), name  # no temporary file left
        pixels, spec = read_exr(tmp_path / "out" / name)  # every file there is a complete EXR
        assert pixels.shape == (540, 960, 1)


def test_production_outputs_layers_cryptomatte_report_cutout(checkpoint, bedroom_plate, tmp_path):
    from mattebridge.core.image.cryptomatte import layer_key, name_to_float

    prompts = Prompts()
    prompts.add_point("hero", 1001, 300, 300)
    prompts.set_box("prop", 1001, (550, 120, 800, 540))
    (tmp_path / "p.json").write_text(prompts.dumps())
    common = [
        "--frames",
        "1001-1004",
        "--prompts",
        tmp_path / "p.json",
        "--colorspace",
        "ACEScg",
        *model_args(checkpoint),
    ]
    code, _, err = run_cli(
        "track",
        bedroom_plate,
        *common,
        "--layout",
        "cryptomatte",
        "--fill-holes",
        "400",
        "--out",
        tmp_path / "crypto" / "shot.####.exr",
        "--report",
        tmp_path / "qc.json",
        "--cutout",
        tmp_path / "cut" / "cut.####.exr",
    )
    assert code == 0, err
    pixels, spec = read_exr(tmp_path / "crypto" / "shot.1002.exr")
    names = list(spec.channelnames)
    assert {"hero.A", "prop.A", "CryptoObject00.R", "CryptoObject00.G", "CryptoObject00.B", "CryptoObject00.A"} <= set(
        names
    )
    assert str(spec.format) == "float"
    key = layer_key("CryptoObject")
    assert spec.get_string_attribute(f"cryptomatte/{key}/name") == "CryptoObject"
    assert set(json.loads(spec.get_string_attribute(f"cryptomatte/{key}/manifest"))) == {"hero", "prop"}
    ids = pixels[..., names.index("CryptoObject00.R")]
    assert set(np.unique(ids)) <= {0.0, float(name_to_float("hero")), float(name_to_float("prop"))}
    scores = json.loads(spec.get_string_attribute("mattebridge/objectScores"))
    assert set(scores) == {"hero", "prop"}

    qc = json.loads((tmp_path / "qc.json").read_text())
    rows = (tmp_path / "qc.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 4 * 2 and "frame" in rows[0]
    assert qc and "hero" in json.dumps(qc)

    cut, cut_spec = read_exr(tmp_path / "cut" / "cut.1003.exr")
    plate, _ = read_exr(bedroom_plate.replace("####", "1003"))
    coverage = cut[..., 3]
    np.testing.assert_allclose(cut[..., :3], plate * coverage[..., None], atol=2e-2)

    # soft edges differ from the raw sigmoid, and only near edges
    code, _, err = run_cli(
        "track", bedroom_plate, *common, "--edge", "raw", "--out", tmp_path / "raw" / "{object}.####.exr"
    )
    assert code == 0, err
    code, _, err = run_cli("track", bedroom_plate, *common, "--out", tmp_path / "soft" / "{object}.####.exr")
    assert code == 0, err
    raw, _ = read_exr(tmp_path / "raw" / "hero.1002.exr")
    soft, _ = read_exr(tmp_path / "soft" / "hero.1002.exr")
    assert np.abs(raw - soft).max() > 0.05


def test_a_report_of_frames_no_pass_reaches_is_strict_json(checkpoint, bedroom_plate, tmp_path):
    """Forward from a prompt on the last frame: the frames before it have no score. The report says null (it wrote
    -Infinity, which is not JSON: `farm gather` refused it)."""

    def strict(text):
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"not JSON: {c}"))

    report = tmp_path / "qc.json"
    code, _, err = run_cli(
        "track",
        bedroom_plate,
        "--frames",
        "1001-1003",
        "--point",
        "300,300@1003",
        "--direction",
        "forward",
        "--colorspace",
        "ACEScg",
        "--out",
        tmp_path / "m.####.exr",
        "--report",
        report,
        *model_args(checkpoint),
    )
    assert code == 0, err
    records = {r["frame"]: r for r in strict(report.read_text())["records"]}
    assert [records[f]["score"] for f in (1001, 1002)] == [None, None] and records[1003]["score"] is not None
    assert not records[1001]["present"] and "-inf" not in report.with_suffix(".csv").read_text().lower()


def test_track_on_a_server_takes_the_same_paths_and_refuses_model_flags(mb_server, bedroom_plate, tmp_path):
    """A relative --ocio is this folder's, as the plate and outputs are; the model flags belong to the server."""
    import PyOpenColorIO as ocio

    work = tmp_path / "shot"
    work.mkdir()
    (work / "show.ocio").write_text(ocio.Config.CreateFromFile("ocio://studio-config-latest").serialize())
    track = ["track", bedroom_plate, "--frames", "1001-1002", "--point", "300,300", "--server", mb_server.address]
    code, _, err = run_cli(*track, "--ocio", "show.ocio", "--colorspace", "ACEScg", "--out", "m.####.exr", cwd=work)
    assert code == 0, err
    assert sorted(os.listdir(work)) == ["m.1001.exr", "m.1002.exr", "show.ocio"]
    for flag in (["--checkpoint", "x.pt"], ["--image-size", "512"], ["--device", "cpu"], ["--matte-model", "m"]):
        code, _, err = run_cli(*track, *flag, "--out", tmp_path / "n.####.exr")
        assert code == 2 and err.strip().splitlines() == [
            f"mattebridge: error: {flag[0]}: chosen where `mattebridge serve` starts, not with --server (its model is"
            " its own)"
        ], err
    assert not list(tmp_path.glob("n.*"))
