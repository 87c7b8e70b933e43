"""The DaVinci Resolve script (plugins/resolve/MatteBridge.py) against a stand-in of Resolve's scripting API
(tests/resolve/standin_resolve.py — not Resolve) and the real prompt window process and server."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, free_port, read_exr, write_exr

sys.path.insert(0, str(Path(__file__).parent / "resolve"))
import standin_resolve as standin  # noqa: E402

SCRIPT = REPO / "plugins" / "resolve" / "MatteBridge.py"
_spec = importlib.util.spec_from_file_location("mattebridge_resolve_script", SCRIPT)
script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(script)

HOUR_24 = 24 * 3600  # 01:00:00:00 at 24 fps


@pytest.fixture(autouse=True)
def fresh_calls(monkeypatch):
    standin.StandIn.calls.clear()
    monkeypatch.delenv("RESOLVE_SCRIPT_API", raising=False)
    yield


def environment(tmp_path, server: str, **settings) -> dict:
    """What Resolve's Python would have: its own PYTHONHOME/Qt paths (which must not reach mattebridge)."""
    config = {"command": [sys.executable, "-m", "mattebridge.cli", "pick"], "server": server, **settings}
    path = tmp_path / "resolve.json"
    path.write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MATTEBRIDGE_")}
    env.update(
        MATTEBRIDGE_RESOLVE_CONFIG=str(path),
        QT_QPA_PLATFORM="offscreen",
        PYTHONHOME="/nonexistent/resolve/python",
        QT_PLUGIN_PATH="/nonexistent/resolve/qt",
    )
    return env


def saved_prompts(tmp_path, name: str, frame: int, x: float, y: float) -> Path:
    """media/ with a two-frame plate and the prompts the script saved for it earlier (one click on `name`)."""
    media = tmp_path / "media"
    media.mkdir()
    plate(media, [1, 2])
    folder = media / "mattebridge" / "plate"
    folder.mkdir(parents=True)
    click = {"frame": frame, "points": [{"x": x, "y": y, "positive": True}]}
    (folder / "prompts.json").write_text(json.dumps({"version": 1, "objects": [{"name": name, "frames": [click]}]}))
    return media


def plate(folder: Path, frames, w=96, h=64) -> None:
    for i, f in enumerate(frames):
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        subject = ((np.abs(x - (0.4 * w + i)) < 0.15 * w) & (np.abs(y - 0.5 * h) < 0.25 * h)).astype(np.float32)
        write_exr(
            folder / f"plate.{f:04d}.exr", {"R": 0.1 + 0.8 * subject, "G": 0.1 + 0.4 * subject, "B": 0.1 + 0 * subject}
        )


def run_script(resolve, env):
    lines, argvs = [], []

    def runner(argv, **kw):
        argvs.append(list(argv))
        return subprocess.run(argv, timeout=120, **kw)

    code = script.main(resolve, env, runner, lines.append)
    return code, lines, argvs


def called(method):
    return [args for cls, m, args in standin.StandIn.calls if m == method]


def test_script_is_python_39():
    ast.parse(SCRIPT.read_text(), feature_version=(3, 9))


def test_file_paths_frames_and_timecodes(tmp_path):
    plate(tmp_path, [998, 999, 1000, 1001])
    src = script.parse_file_path("A", str(tmp_path / "plate.[0998-1001].exr"))
    assert (src.pattern, src.first, src.last, src.padding) == (str(tmp_path / "plate.####.exr"), 998, 1001, 4)
    write_exr(tmp_path / "still.tif", {"R": np.zeros((4, 4), np.float32)})
    single = script.parse_file_path("B", str(tmp_path / "still.tif"))
    assert (single.pattern, single.first, single.last, single.sequence) == (str(tmp_path / "still.tif"), 1, 1, False)
    for path, reason in (
        (str(tmp_path / "A001C002.mov"), "is a movie file"),
        (str(tmp_path / "take.[1-9].ari"), "is a movie file"),
        (str(tmp_path / "notes.txt"), "not an image format"),
        (str(tmp_path / "gone.[1001-1010].exr"), "media offline"),
        ("", "not file-based"),
    ):
        with pytest.raises(script.ScriptError, match=reason):
            script.parse_file_path("C", path)

    assert script.timecode_frames("01:00:00:00", 24) == HOUR_24
    assert script.timecode_frames("01:00:00:10", 23.976) == HOUR_24 + 10  # counted at the nominal rate
    assert script.timecode_frames("00:00:59;29", 29.97) == 1799
    assert script.timecode_frames("00:01:00;02", 29.97) == 1800  # drop-frame: 00:01:00;00 and ;01 do not exist
    assert script.timecode_frames("00:10:00;00", 29.97) == 17982
    assert script.timecode_frames("01:00:00;00", 59.94) == 215784

    seq = script.parse_file_path("A", str(tmp_path / "plate.[0998-1001].exr"))
    folder = script.clip_folder(seq, {"matte_dir": None})
    assert folder == str(tmp_path / "mattebridge" / "plate")
    assert script.out_pattern(folder, 3, seq) == str(
        tmp_path / "mattebridge" / "plate" / "v003" / "{object}" / "plate_{object}.####.exr"
    )
    assert script.out_pattern(script.clip_folder(single, {"matte_dir": None}), 1, single).endswith(
        os.path.join("v001", "{object}", "still_{object}.exr")
    )
    elsewhere = script.clip_folder(seq, {"matte_dir": str(tmp_path / "m")})
    assert os.path.dirname(elsewhere) == str(tmp_path / "m") and os.path.basename(elsewhere).startswith("plate_")
    assert script.is_under(str(tmp_path / "mattebridge" / "plate" / "v001" / "a" / "plate_a.[0998-1001].exr"), folder)
    assert not script.is_under(str(tmp_path / "mattebridge" / "plateX" / "a.exr"), folder)


def test_the_playhead_picks_the_source_frame_and_the_range(tmp_path):
    plate(tmp_path, range(1001, 1011))
    path = str(tmp_path / "plate.[1001-1010].exr")
    # item starts at timeline frame 01:00:00:08 with its first 2 source frames trimmed off; playhead at :10
    resolve = standin.resolve_with_clip(path, "01:00:00:10", start=HOUR_24 + 8, duration=4, source_offset=2)
    project, shot = script.current_shot(resolve)
    assert shot.frame == 1001 + 2 + 2 and shot.used == (1003, 1006)
    args = script.picker_arguments(
        shot, dict(script.DEFAULTS, range="item", handles=1), "/m", "/m/o.####.exr", "/m/p.json"
    )
    assert args[args.index("--frames") + 1] == "1002-1007" and args[args.index("--frame") + 1] == "1005"
    args = script.picker_arguments(shot, dict(script.DEFAULTS), "/m", "/m/o.####.exr", "/m/p.json")
    assert args[args.index("--frames") + 1] == "1001-1010"
    assert args[args.index("--channels") + 1] == "RGBA" and "--print-result" in args and "--prompts" not in args
    resolve = standin.resolve_with_clip(path, "01:00:10:00", start=HOUR_24 + 8, duration=4, source_offset=2)
    assert script.current_shot(resolve)[1].frame == 1010  # past the clip's end: its last frame


def test_clear_one_line_messages_when_there_is_nothing_to_matte(tmp_path):
    env = environment(tmp_path, "tcp://127.0.0.1:9")
    lines = []
    assert script.main(None, env, subprocess.run, lines.append) == 2  # no `resolve` object reached the script
    assert lines == [script.PREFIX + script.NO_API]

    class Refusing(standin.Resolve):
        def GetProjectManager(self):
            raise RuntimeError("scripting is disabled")

    cases = [
        (Refusing(None), "External scripting using"),
        (standin.Resolve(None), "no project is open"),
        (standin.Resolve(standin.Project(None)), "no timeline is open"),
        (standin.Resolve(standin.Project(standin.Timeline(None, "01:00:00:00"))), "no video clip under the playhead"),
        (standin.resolve_with_clip(None, "01:00:00:00", HOUR_24, 10), "not file-based"),
        (standin.resolve_with_clip("/shots/A001C002.mov", "01:00:00:00", HOUR_24, 10), "is a movie file"),
    ]
    for resolve, reason in cases:
        code, lines, argvs = run_script(resolve, env)
        assert code == 2 and len(lines) == 1 and reason in lines[0] and lines[0].startswith(script.PREFIX)
        assert "\n" not in lines[0] and argvs == []  # stops before starting anything
    assert not called("AddClipMattesToMediaPool") and not called("DeleteClipMattes")


def test_server_down_is_one_line_and_changes_nothing(tmp_path):
    plate(tmp_path, [1, 2, 3])
    dead = f"tcp://127.0.0.1:{free_port()}"
    env = environment(tmp_path, dead, timeout=0.5)
    resolve = standin.resolve_with_clip(str(tmp_path / "plate.[0001-0003].exr"), "01:00:00:01", HOUR_24, 3)
    code, lines, argvs = run_script(resolve, env)
    assert code == 2 and len(lines) == 1
    assert dead in lines[0] and "not running" in lines[0] and "mattebridge serve" in lines[0]
    assert len(argvs) == 1 and "--check" in argvs[0]  # the window never opened
    assert not called("AddClipMattesToMediaPool") and not called("DeleteClipMattes")


def test_tracks_attaches_rgba_mattes_and_a_rerun_replaces_them(tmp_path, mb_server):
    media = tmp_path / "media"
    media.mkdir()
    frames = list(range(1001, 1007))
    plate(media, frames)
    clip_folder = media / "mattebridge" / "plate"
    clip_folder.mkdir(parents=True)
    (clip_folder / "prompts.json").write_text(
        json.dumps(
            {
                "version": 1,
                "objects": [
                    {"name": "hero", "frames": [{"frame": 1003, "points": [{"x": 40.5, "y": 32.5, "positive": True}]}]}
                ],
            }
        )
    )
    env = environment(tmp_path, mb_server.address, auto=True, keep_versions=1)
    resolve = standin.resolve_with_clip(str(media / "plate.[1001-1006].exr"), "01:00:00:10", HOUR_24 + 8, 6)
    mpi = resolve._manager._project._timeline._item._mpi
    mpi.mattes.append("/elsewhere/graded_by_hand.exr")  # a matte the user attached: never touched

    code, lines, argvs = run_script(resolve, env)
    assert code == 0, lines
    pick = argvs[-1]
    assert pick[pick.index("--frame") + 1] == "1003" and pick[pick.index("--frames") + 1] == "1001-1006"
    assert "--auto-track" in pick and pick[pick.index("--prompts") + 1] == str(clip_folder / "prompts.json")
    ((added_mpi, first_paths, eye),) = called("AddClipMattesToMediaPool")
    assert added_mpi is mpi and eye is None
    assert first_paths == [str(clip_folder / "v001" / "hero" / f"plate_hero.{f}.exr") for f in frames]
    pixels, spec = read_exr(first_paths[2])
    assert list(spec.channelnames) == ["R", "G", "B", "A"]
    for c in range(3):
        assert np.array_equal(pixels[..., c], pixels[..., 3])  # the matte in R, G, B and A
    assert mpi.mattes == ["/elsewhere/graded_by_hand.exr"] + first_paths
    assert not called("DeleteClipMattes")
    assert "attached 1 clip matte(s): hero (6 frames)" in lines[-1] and "Add Matte" in lines[-1]

    standin.StandIn.calls.clear()
    code, lines, argvs = run_script(resolve, env)
    assert code == 0, lines
    ((_, second_paths, _),) = called("AddClipMattesToMediaPool")
    assert second_paths == [p.replace(os.sep + "v001" + os.sep, os.sep + "v002" + os.sep) for p in first_paths]
    ((deleted_mpi, deleted),) = called("DeleteClipMattes")
    assert deleted_mpi is mpi and deleted == first_paths  # only the mattes this script attached before
    assert mpi.mattes == ["/elsewhere/graded_by_hand.exr"] + second_paths
    assert not (clip_folder / "v001").exists() and (clip_folder / "v002").is_dir()  # keep_versions 1
    assert "replacing 6 earlier" in lines[-1]


def test_a_refused_track_reports_the_reason_and_keeps_the_mattes(tmp_path, mb_server):
    media = saved_prompts(tmp_path, "hero", frame=2, x=500.5, y=32.5)
    env = environment(tmp_path, mb_server.address, auto=True)
    resolve = standin.resolve_with_clip(str(media / "plate.[0001-0002].exr"), "01:00:00:01", HOUR_24, 2)
    code, lines, _ = run_script(resolve, env)
    assert code == 2 and len(lines) == 2  # "opening ..." then the reason
    assert "point 500.5,32.5 is outside the image" in lines[-1] and lines[-1].startswith(script.PREFIX + "A001_C002: ")
    assert not called("AddClipMattesToMediaPool") and not called("DeleteClipMattes")


def test_settings_and_the_child_environment(tmp_path):
    env = environment(tmp_path, "tcp://127.0.0.1:1", matte_dir=str(tmp_path / "m"))
    config = script.load_config(env)
    assert config["matte_dir"] == str(tmp_path / "m") and config["range"] == "clip"
    assert script.pick_command(config) == [sys.executable, "-m", "mattebridge.cli", "pick"]
    env["MATTEBRIDGE_EXE"] = "/opt/mb/bin/mattebridge"
    env["MATTEBRIDGE_SERVER"] = "tcp://10.0.0.2:5557"
    config = script.load_config(env)
    assert (
        script.pick_command(config) == ["/opt/mb/bin/mattebridge", "pick"] and config["server"] == "tcp://10.0.0.2:5557"
    )
    child = script.child_environment(env)
    assert "PYTHONHOME" not in child and "QT_PLUGIN_PATH" not in child and child["QT_QPA_PLATFORM"] == "offscreen"
    with pytest.raises(script.ScriptError, match="cannot find the `mattebridge` command"):
        script.pick_command(dict(script.DEFAULTS, config_path="x.json"), which=lambda name: None)
    (tmp_path / "resolve.json").write_text(json.dumps({"sever": "typo"}))
    with pytest.raises(script.ScriptError, match="unknown setting.*sever"):
        script.load_config(env)


# --- where Resolve is less kind than a naive stand-in (tests/resolve/standin_resolve.py, docstring) -----------
def test_the_api_message_claims_no_edition_policy():
    """The scripting README: its APIs "cover a common superset of functions for both the Free and Studio
    versions"; it states no edition rule for running scripts, so neither does the message."""
    for text in (script.NO_API, script.__doc__.splitlines()[0]):
        assert not re.search(r"studio|free\b|edition|only since", text, re.I), text
    assert "External scripting using: Local" in script.NO_API


def test_a_sequence_with_gaps_is_refused_in_one_line(tmp_path):
    plate(tmp_path, [f for f in range(1001, 1011) if f not in (1004, 1007, 1008)])
    path = standin.sequence_file_path(str(tmp_path / "plate.####.exr"))
    assert os.path.basename(path) == "plate.[1001-1003,1005-1006,1009-1010].exr"  # as Resolve shows it
    resolve = standin.resolve_with_clip(path, "01:00:00:01", HOUR_24, 7)
    code, lines, argvs = run_script(resolve, environment(tmp_path, "tcp://127.0.0.1:9"))
    assert code == 2 and len(lines) == 1 and argvs == []
    assert "has gaps (frames 1004, 1007-1008 are missing" in lines[0] and "media offline" not in lines[0]
    plate(tmp_path, [1004, 1007, 1008])
    whole = script.parse_file_path("A", standin.sequence_file_path(str(tmp_path / "plate.####.exr")))
    assert (whole.first, whole.last, whole.padding) == (1001, 1010, 4)


def test_an_empty_timeline_frame_rate_uses_the_projects(tmp_path):
    plate(tmp_path, range(1001, 1011))
    path = str(tmp_path / "plate.[1001-1010].exr")
    resolve = standin.resolve_with_clip(path, "01:00:00:03", HOUR_24, 10, fps="", project_fps="24")
    assert script.current_shot(resolve)[1].frame == 1004
    resolve = standin.resolve_with_clip(path, "01:00:00:03", HOUR_24, 10, fps="", project_fps="")
    code, lines, _ = run_script(resolve, environment(tmp_path, "tcp://127.0.0.1:9"))
    assert code == 2 and "cannot read the timeline's frame rate" in lines[0]
    assert "scripting API" not in lines[0]  # not mistaken for an unreachable API


def test_the_source_frame_comes_from_get_source_start_frame(tmp_path):
    """A 48 fps sequence in a 24 fps timeline: GetLeftOffset counts timeline frames (2), the source start is
    4 source frames in, and each timeline frame is 2 source frames."""
    plate(tmp_path, range(1001, 1031))
    path = str(tmp_path / "plate.[1001-1030].exr")
    resolve = standin.resolve_with_clip(path, "01:00:00:03", start=HOUR_24, duration=10, source_offset=4, clip_fps="48")
    _, shot = script.current_shot(resolve)
    assert shot.frame == 1001 + 4 + 3 * 2 and shot.used == (1005, 1024)
    assert called("GetSourceStartFrame") and not called("GetLeftOffset")


def test_object_names_are_checked_before_anything_starts(tmp_path):
    media = saved_prompts(tmp_path, "../hero", frame=1, x=4.5, y=4.5)
    resolve = standin.resolve_with_clip(str(media / "plate.[0001-0002].exr"), "01:00:00:00", HOUR_24, 2)
    code, lines, argvs = run_script(resolve, environment(tmp_path, "tcp://127.0.0.1:9"))
    assert code == 2 and len(lines) == 1 and argvs == []
    assert "object name '../hero': use 1-64 letters" in lines[0] and "prompts.json" in lines[0]
