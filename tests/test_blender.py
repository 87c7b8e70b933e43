"""The Blender extension (plugins/blender): its pure logic here, and a real Blender in its own process.

Blender is the `bpy` 5.0.1 wheel in .venv-blender (scripts/setup-blender.sh), run as a separate process per
scenario (tests/blender/bl_*.py) with the extension installed from the built .zip into a temporary user
repository, talking to a real `mattebridge serve` (random-weight tiny model) on a loopback port. bpy is never
imported in this interpreter.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import ServerProcess, free_port, read_exr, write_exr

from mattebridge.core.errors import MatteBridgeError
from mattebridge.core.paths import inside
from mattebridge.core.wire import prompts as core_prompts
from mattebridge.core.wire.prompts import Prompts

REPO = Path(__file__).resolve().parent.parent
PLUGIN = REPO / "plugins" / "blender"
SCRIPTS = Path(__file__).resolve().parent / "blender"
BLENDER_PYTHON = REPO / ".venv-blender" / "bin" / "python"
VALIDATOR = ".venv-blender/lib/python3.11/site-packages/bpy/5.0/scripts/addons_core/bl_pkg/cli/blender_ext.py"


def _load(name: str, path: Path, package: bool = False):
    spec = importlib.util.spec_from_file_location(
        name, path, submodule_search_locations=[str(path.parent)] if package else None
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# The add-on package without Blender: its __init__ imports nothing of bpy until register().
_load("mb_blender", PLUGIN / "__init__.py", package=True)
from mb_blender import frames, jobs, mapping, store  # noqa: E402

build = _load("mb_blender_build", PLUGIN / "build.py")


# --- frames: files <-> frame numbers <-> timeline ---------------------------------------------------------
def test_file_sequence_from_element_names():
    seq = frames.file_sequence("/shots/a", [f"plate.{f}.exr" for f in range(1001, 1006)])
    assert seq.pattern == "/shots/a/plate.####.exr" and seq.range_text == "1001-1005"
    assert seq.frames == (1001, 1002, 1003, 1004, 1005) and seq.element_of(1003) == 2 and seq.element_of(999) is None
    assert seq.file_name(1010, "{object}.####.exr") == "{object}.1010.exr"
    unpadded = frames.file_sequence("/s", ["a_998.png", "a_999.png", "a_1000.png"])
    assert unpadded.name_pattern == "a_###.png" and unpadded.frames == (998, 999, 1000)
    assert frames.file_sequence("/s", ["shot_v002.0007.jpg"]).name_pattern == "shot_v002.####.jpg"
    still = frames.file_sequence("/s", ["still.png"])
    assert still.name_pattern == "still.png" and still.frames == (1,)


@pytest.mark.parametrize(
    "names, words",
    [
        (["p.1001.exr", "p.1003.exr"], "not consecutive"),
        (["p.1001.exr", "q.1002.exr"], "different sequences"),
        (["p.1001.exr", "p.1002.png"], "different sequences"),
        (["p.1001.exr", "still.exr"], "no frame number"),
        (["p.0999.exr", "p.1000.exr", "p.01001.exr"], "padding"),
        ([], "no image files"),
    ],
)
def test_file_sequence_refuses_what_the_server_cannot_open_as_one_range(names, words):
    with pytest.raises(MatteBridgeError, match=words):
        frames.file_sequence("/s", names)


def test_strip_timing_matches_blenders_rules():
    # 10 files at timeline 10..19; 2 cut from the content start, 1 from its end; handles at 12..17
    t = frames.StripTiming(
        frame_start=10, final_start=12, final_end=17, elements=10, anim_offset_start=2, anim_offset_end=1
    )
    assert [t.element_at(f) for f in range(11, 18)] == [None, 4, 5, 6, 7, 8, None]
    assert t.visible_elements() == [4, 5, 6, 7, 8]
    for e in t.visible_elements():
        assert t.element_at(t.timeline_frame_of(e)) == e
    assert t.timeline_frame_of(2) is None  # trimmed by the handle
    r = frames.StripTiming(frame_start=10, final_start=11, final_end=18, elements=10, anim_offset_start=2, reverse=True)
    assert [r.element_at(f) for f in range(11, 18)] == [8, 7, 6, 5, 4, 3, 2]
    seq = frames.file_sequence("/s", [f"n.{i:04d}.exr" for i in range(1, 11)])
    assert frames.timeline_files(r, seq) == [9, 8, 7, 6, 5, 4, 3]


# --- mapping: preview view space <-> plate pixels ---------------------------------------------------------
def test_default_fit_maps_the_frame_corners_and_centre():
    sx, sy = mapping.fit_scale("FIT", 960, 540, 1920, 1080)
    place = mapping.Placement(960, 540, sx, sy)
    assert place.image_to_view(480, 270) == (0, 0)
    assert place.image_to_view(0, 0) == (-960, 540)  # top-left of the plate: top-left of the frame, y up
    assert place.view_to_image(960, -540) == (960, 540)
    assert mapping.fit_scale("FIT", 1000, 1000, 1920, 1080) == (1.08, 1.08)
    assert mapping.fit_scale("FILL", 1000, 1000, 1920, 1080) == (1.92, 1.92)
    assert mapping.fit_scale("STRETCH", 1000, 500, 2000, 2000) == (2.0, 4.0)
    assert mapping.fit_scale("ORIGINAL", 10, 10, 20, 20) == (1.0, 1.0)


def test_view_to_plate_inverts_every_transform():
    rng = np.random.default_rng(3)
    for _ in range(200):
        place = mapping.Placement(
            float(rng.integers(16, 4000)),
            float(rng.integers(16, 3000)),
            *rng.uniform(0.1, 4, 2),
            *rng.uniform(-500, 500, 2),
            float(rng.uniform(-math.pi, math.pi)),
            tuple(rng.uniform(0, 1, 2)),
            bool(rng.integers(2)),
            bool(rng.integers(2)),
            float(rng.choice([1.0, 2.0, 0.9])),
            tuple(rng.uniform(-50, 50, 2)),
        )
        x, y = rng.uniform(0, place.image_w), rng.uniform(0, place.image_h)
        np.testing.assert_allclose(place.view_to_image(*place.image_to_view(x, y)), (x, y), atol=1e-6)
        np.testing.assert_allclose(place.plate_to_view(*place.view_to_plate(x, y)), (x, y), atol=1e-6)


def test_data_window_offset_and_pixel_aspect():
    # Blender shows the data window (here 40x30 at 10, 5 in an 80x60 display window); 2:1 anamorphic scene
    place = mapping.Placement(40, 30, pixel_aspect=2.0, data_offset=(10, 5))
    assert place.view_to_plate(0, 0) == (30, 20)  # centre of the data window, in display-window pixels
    assert place.plate_to_view(10, 5) == (-40, 15)  # data window's top-left: x stretched by the aspect
    quad = mapping.Placement(4, 2).image_quad_view()
    assert quad == [(-2, 1), (2, 1), (2, -1), (-2, -1)]


def test_prompt_tool_gestures():
    place = mapping.Placement(960, 540, 2.0, 2.0, data_offset=(10, 20))  # a 960x540 plate fit into 1920x1080
    assert mapping.gesture(place, (0, 0), (0, 0), False, False) == ("point", 490, 290, True)
    assert mapping.gesture(place, (0, 0), (1, 1), False, True) == ("point", 490, 290, False)  # Ctrl: background
    assert mapping.gesture(place, (-2000, 0), (-2000, 0), False, False) is None  # outside the image
    # a drag from outside the top-left corner to the centre: clipped to the image, corners ordered
    assert mapping.gesture(place, (0, 0), (-1000, 600), True, False) == ("box", 10, 20, 490, 290)
    assert mapping.gesture(place, (-1000, 600), (-1100, 700), True, False) is None  # entirely outside


def test_online_access_allows_only_this_machine():
    for local in ("tcp://127.0.0.1:5557", "tcp://localhost:1", "tcp://[::1]:5557", "ipc:///tmp/mb"):
        assert jobs.is_local(local)
        jobs.check_online_access(local, False)
    for remote in ("tcp://192.168.1.4:5557", "tcp://render01:5557", "tcp://127.0.0.1.evil.com:5557"):
        assert not jobs.is_local(remote)
        jobs.check_online_access(remote, True)
        with pytest.raises(MatteBridgeError, match="Online Access"):
            jobs.check_online_access(remote, False)


# --- prompts on the strip <-> prompts JSON --------------------------------------------------------------
def test_store_round_trip_is_the_prompts_json_schema():
    p = Prompts()
    store.add_point(p, "hero", 1001, 812.5, 540.5, True)
    store.add_point(p, "hero", 1001, 300, 200, False)
    store.set_box(p, "hero", 1001, (1000, 900, 700, 300))  # corners in any order
    store.add_point(p, "prop.2", 1040, 10, 20)
    doc = store.to_store(p)
    assert doc == {
        "version": 1,
        "objects": {
            "hero": {"1001": {"points": [812.5, 540.5, 1.0, 300.0, 200.0, 0.0], "box": [700.0, 300.0, 1000.0, 900.0]}},
            "prop.2": {"1040": {"points": [10.0, 20.0, 1.0]}},
        },
    }
    back = store.to_prompts(json.loads(json.dumps(doc)))  # what Blender's to_dict() gives after save/reload
    assert back.to_json() == p.to_json()
    assert Prompts.from_json(back.to_json()).to_json() == p.to_json()  # the CLI's reader accepts it as is
    assert store.frame_prompt(back, "hero", 1001) == (
        [(812.5, 540.5, True), (300.0, 200.0, False)],
        (700.0, 300.0, 1000.0, 900.0),
    )
    assert store.frame_prompt(back, "hero", 1002) == ([], None)


def test_store_box_replaces_clear_prunes_and_names_are_checked():
    p = Prompts()
    store.set_box(p, "main", 5, (0, 0, 10, 10))
    store.set_box(p, "main", 5, (1, 1, 4, 4))
    assert p.objects["main"][5].box == (1, 1, 4, 4)
    with pytest.raises(MatteBridgeError):
        store.set_box(p, "main", 5, (3, 3, 3, 9))  # empty box: refused, the old one stays
    assert p.objects["main"][5].box == (1, 1, 4, 4)
    store.add_point(p, "main", 6, 1, 1)
    store.add_point(p, "other", 6, 1, 1)
    assert store.clear(p, "main", 6) == 1 and sorted(p.objects) == ["main", "other"]
    assert store.clear(p, None, None) == 2 and p.is_empty()
    p.on("main", 9)  # an empty entry (Prompts.on creates them) is not stored
    assert store.to_store(store.prune(p)) == {"version": 1, "objects": {}}
    for bad in ("", "has space", "a/b", "x" * 64):
        with pytest.raises(MatteBridgeError, match="object name"):
            store.check_object_name(bad)
    with pytest.raises(MatteBridgeError, match="newer"):
        store.to_prompts({"version": 2, "objects": {}})
    with pytest.raises(MatteBridgeError, match="triples"):
        store.to_prompts({"objects": {"a": {"1": {"points": [1.0, 2.0]}}}})


def test_store_object_names_are_the_projects_one_grammar():
    # the extension bundles the torch-free mattebridge wheel: it uses core's check itself (no copy of the pattern),
    # and only adds Blender's 63-character limit on custom-property keys (the prompts are stored under the name)
    assert store.check_project_name is core_prompts.check_object_name
    names = [
        "main",
        "hero_2",
        "prop.2",
        "-x",
        "_",
        "a-b.c_d",
        "9",
        "x" * 63,
        "x" * 64,
        "x" * 65,
        "",
        ".hidden",
        "..",
        "a/b",
        "a\\b",
        "has space",
        " main",
        "main ",
        "caf\u00e9",
        "x\n",
        "$HOME",
        "{object}",
        "~",
        "a:b",
    ]
    for name in names:
        if core_prompts.OBJECT_NAME.fullmatch(name) and len(name) <= store.MAX_NAME == 63:
            assert store.check_object_name(name) == name
        else:
            with pytest.raises(MatteBridgeError, match="object name"):
                store.check_object_name(name)
    with pytest.raises(MatteBridgeError, match="at most 63 characters in Blender"):
        store.check_object_name("x" * 64)  # core's longest name: too long for a custom-property key


# --- jobs: the runner the add-on drives the client with ---------------------------------------------------
def test_overlay_texture_is_tinted_bottom_up_and_bounded():
    alpha = np.zeros((6, 4), np.float32)
    alpha[0, :] = 1.0  # top row
    rgba = jobs.overlay_rgba(alpha, (1.0, 0.5, 0.0), 0.5)
    assert rgba.shape == (6, 4, 4) and rgba.dtype == np.float32 and rgba.flags.c_contiguous
    assert (rgba[-1, :, 3] == 0.5).all() and (rgba[:-1, :, 3] == 0).all()  # GPU rows: bottom first
    assert (rgba[..., :3] == (1.0, 0.5, 0.0)).all()
    big = jobs.overlay_rgba(np.full((5000, 3000), 2.0, np.float32), max_side=1024)
    assert max(big.shape[:2]) <= 1024 and big[..., 3].max() == 0.5  # clipped to 1 before opacity


def test_job_reports_errors_in_one_line_and_runs_cancel_hooks():
    def fails(job):
        raise MatteBridgeError("tcp://x: no reply in 1s\n(3 tries)")

    job = jobs.BackgroundJob("t", fails).run()
    assert job.state == "error" and job.message == "tcp://x: no reply in 1s (3 tries)"
    assert [e.kind for e in job.poll()] == ["error"]
    bug = jobs.BackgroundJob("t", lambda job: {}["missing"]).run()
    assert bug.state == "error" and bug.message == "unexpected KeyError: 'missing'"

    release = threading.Event()
    seen = []

    def work(job):
        job.on_cancel(lambda: (seen.append("hook"), release.set()))
        for i in range(3):
            job.progress(i + 1, 3, frame=i)
        release.wait(10)
        return "partial"

    job = jobs.BackgroundJob("t", work).start()
    deadline = time.monotonic() + 10
    while job.done < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    job.cancel()
    job.thread.join(10)
    events = job.poll()
    assert [e.kind for e in events] == ["progress"] * 3 + ["cancelled"] and seen == ["hook"]
    assert events[-1].data["result"] == "partial" and job.fraction == 1.0 and job.finished


# --- the server, started as docs/blender.md tells a user to start it ---------------------------------------
def documented_roots(plate_dirs, matte_dirs) -> list:
    """What docs/blender.md (Install) tells a user to allow: each folder holding plates the strips read, and
    the matte folder (here the default `//mattes/`, next to each project's .blend). Nothing else: the extension
    writes nothing the server reads, and previews come back over the socket."""
    return [str(d) for d in [*plate_dirs, *matte_dirs]]


def serve_documented(checkpoint, roots, log_dir, cwd, port: int = 0) -> ServerProcess:
    """`mattebridge serve --allow-root ...` with exactly `roots`, run from `cwd` (not the repository, and no
    root lies under it), so neither default root (working folder, system temp folder) is in play."""
    flags = [arg for root in roots for arg in ("--allow-root", root)]
    server = ServerProcess(checkpoint, log_dir, "--client-timeout", "5", *flags, port=port, cwd=str(cwd))
    server.roots = [os.path.realpath(r) for r in roots]
    return server


@pytest.fixture(scope="module")
def projects(tmp_path_factory):
    """One project folder per Blender test that talks to the server; each keeps its mattes in `mattes/`."""
    base = tmp_path_factory.mktemp("projects")
    made = {name: base / name for name in ("flow", "runner", "problems", "ui")}
    for folder in made.values():
        folder.mkdir()
    return made


@pytest.fixture(scope="module")
def blender_server(checkpoint, bedroom_plate, projects, tmp_path_factory):
    """The server every Blender test talks to: its allowed roots are exactly the documented ones (the plate
    folders and every project's matte folder), its working folder an empty folder outside them and outside
    the repository (which holds .venv-blender, i.e. Blender's own config.ocio)."""
    cwd = tmp_path_factory.mktemp("serve_cwd")
    roots = documented_roots(
        [os.path.dirname(bedroom_plate), projects["problems"] / "broken"],
        [folder / "mattes" for folder in projects.values()],
    )
    server = serve_documented(checkpoint, roots, cwd, cwd)
    assert not any(inside(os.path.realpath(cwd), r) or inside(r, os.path.realpath(cwd)) for r in server.roots)
    assert not any(inside(str(REPO), r) or inside(r, str(REPO)) for r in server.roots)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def blender_config(blender_python):
    """Blender's own OCIO config, inside its installation (the bpy wheel's datafiles)."""
    found = sorted(
        Path(blender_python).parent.parent.glob(
            "lib/python3.11/site-packages/bpy/*/datafiles/colormanagement/config.ocio"
        )
    )
    assert found, f"no datafiles/colormanagement/config.ocio next to {blender_python}"
    return str(found[-1])


def listed_roots(message: str) -> list:
    """The roots a forbidden_path refusal lists: '... allowed roots (A, B; see --allow-root)'."""
    return message.rsplit("(", 1)[1].split("; see --allow-root")[0].split(", ")


@pytest.mark.skipif(
    os.name != "posix", reason="the everyone-can-read rule is POSIX; elsewhere configs must be under a root"
)
def test_documented_roots_take_blenders_own_config_and_refuse_a_private_one(
    blender_server, blender_config, bedroom_plate
):
    from mattebridge.core.wire.client import Client, ServerError

    real = os.path.realpath(blender_config)
    assert not any(inside(real, r) for r in blender_server.roots)  # accepted for being readable by everyone
    # a copy of Blender's colormanagement folder outside the roots, in a folder every user can enter
    spare = Path(tempfile.mkdtemp(prefix="mattebridge-ocio-", dir="/tmp" if os.path.isdir("/tmp") else None))
    try:
        spare.chmod(0o755)
        shutil.copytree(os.path.dirname(real), spare / "colormanagement")
        copy = spare / "colormanagement" / "config.ocio"
        lut = spare / "colormanagement" / "filmic" / "filmic_to_0-70_1-03.spi1d"
        assert lut.is_file()
        with Client(blender_server.address, timeout=30) as client:

            def opened(config):
                clip = client.open_clip(bedroom_plate, "1001-1002", colorspace="ACEScg", ocio=str(config))
                clip.close()
                return clip.config, clip.display, clip.view

            assert opened(blender_config) == (real, "sRGB", "Standard")
            assert opened(copy) == (os.path.realpath(copy), "sRGB", "Standard")  # world-readable copy: same rule
            copy.chmod(0o600)  # the same file, readable by its owner only: the roots decide, and it is outside
            with pytest.raises(ServerError) as refused:
                opened(copy)
            assert refused.value.code == "forbidden_path" and "not readable by every user" in str(refused.value)
            assert sorted(listed_roots(str(refused.value))) == sorted(blender_server.roots)  # exactly the documented
            copy.chmod(0o644)
            lut.chmod(0o600)  # a LUT the config references, as OCIO resolves it
            with pytest.raises(ServerError) as refused:
                opened(copy)
            assert refused.value.code == "forbidden_path" and lut.name in str(refused.value)
    finally:
        shutil.rmtree(spare, ignore_errors=True)


def test_a_clip_lost_with_its_worker_is_opened_again(checkpoint, bedroom_plate, tmp_path):
    """`serve --devices`: the worker holding the connection's clip is killed; the next click opens it again."""
    import signal

    server = ServerProcess(checkpoint, tmp_path, "--devices", "cpu,cpu")
    spec = jobs.ClipSpec(bedroom_plate, "1001-1004", "ACEScg", None)
    conn = jobs.Connection(server.address, timeout=30)
    try:
        first = jobs.preview(conn, spec, 1002, "hero", [(480, 270, True)], None)
        clip = conn.clip(spec)
        status = conn.client().status()
        (holder,) = [w for w in status["workers"] if w["clips"] == 1]
        os.kill(holder["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while conn.client().status()["workers"][holder["worker"]]["restarts"] == 0:
            assert time.monotonic() < deadline, "the server did not notice the dead worker"
            time.sleep(0.2)
        again = jobs.preview(conn, spec, 1002, "hero", [(480, 270, True)], None)
        assert conn.clip(spec).id != clip.id  # a new clip, on a live worker
        np.testing.assert_array_equal(again.alpha, first.alpha)
    finally:
        conn.forget()
        server.stop()


def test_runner_against_a_real_server(blender_server, projects, bedroom_plate):
    spec = jobs.ClipSpec(bedroom_plate, "1001-1004", "ACEScg", None)
    conn = jobs.Connection(blender_server.address, timeout=30)
    try:
        assert jobs.server_info(conn)["device"] == "cpu"
        result = jobs.preview(conn, spec, 1002, "hero", [(480, 270, True)], None)
        assert result.alpha.shape == (540, 960) and result.geometry["display"] == [0, 0, 960, 540]
        assert sorted(result.geometries) == [1001, 1002, 1003, 1004] and result.geometries[1004] == result.geometry
        assert conn.clip(spec) is conn.clip(spec)  # the clip stays open between clicks
        assert jobs.preview(conn, spec, 1002, "hero", [], None) is None  # no prompts: cleared
        assert conn.clip(spec).prompts()["objects"] == []
    finally:
        conn.forget()
    mattes = projects["runner"] / "mattes"
    out = str(mattes / jobs.matte_name_pattern("Scene", "my plate!", 4))
    request = jobs.TrackRequest(
        blender_server.address,
        spec,
        {
            "version": 1,
            "objects": [
                {"name": "hero", "frames": [{"frame": 1002, "points": [{"x": 480, "y": 270, "positive": True}]}]}
            ],
        },
        out,
        "both",
        30,
    )
    job = jobs.BackgroundJob("track", lambda j: jobs.track(j, request)).start()
    job.thread.join(120)
    kinds = [e.kind for e in job.poll()]
    assert job.state == "done" and kinds == ["progress"] * 4 + ["done"], (job.state, job.message)
    assert job.result["frames_written"] == 4
    files = sorted(os.listdir(mattes / "Scene" / "my_plate"))
    assert files == [f"hero.{f}.exr" for f in range(1001, 1005)]
    px, spec_ = read_exr(mattes / "Scene" / "my_plate" / "hero.1002.exr")
    assert spec_.channelnames == ("R", "G", "B", "A") and px.shape == (540, 960, 4)
    assert (px[..., 0] == px[..., 3]).all() and (px[..., 1] == px[..., 3]).all() and (px[..., 2] == px[..., 3]).all()


def test_runner_reopens_its_clip_after_a_server_restart(checkpoint, bedroom_plate, tmp_path):
    spec = jobs.ClipSpec(bedroom_plate, "1001-1002", "ACEScg", None)
    roots = documented_roots([os.path.dirname(bedroom_plate)], [tmp_path / "project" / "mattes"])
    (tmp_path / "cwd").mkdir()
    first = serve_documented(checkpoint, roots, tmp_path, tmp_path / "cwd")
    conn = jobs.Connection(first.address, timeout=30)
    try:
        before = jobs.preview(conn, spec, 1001, "main", [(480, 270, True)], None)
        old_session = conn.client().session
        first.stop()
        second = serve_documented(checkpoint, roots, tmp_path, tmp_path / "cwd", port=first.port)
        try:
            after = jobs.preview(conn, spec, 1001, "main", [(480, 270, True)], None)  # ServerRestarted, handled
            np.testing.assert_array_equal(after.alpha, before.alpha)  # same model, same prompt, same matte
            assert conn.client().session != old_session and conn.client().ping()["session"] == conn.client().session
        finally:
            second.stop()
    finally:
        conn.forget()


def test_runner_server_down_is_a_one_line_error():
    dead = f"tcp://127.0.0.1:{free_port()}"
    conn = jobs.Connection(dead, timeout=0.2)
    job = jobs.BackgroundJob("info", lambda j: jobs.server_info(conn)).run()
    assert job.state == "error" and "no reply" in job.message and "\n" not in job.message


# --- the build --------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def blender_python():
    """.venv-blender's Python (set up if needed), or $MATTEBRIDGE_BLENDER_PYTHON: another bpy build, e.g. a
    Python with bpy==4.2.0, to check the oldest Blender the manifest admits."""
    other = os.environ.get("MATTEBRIDGE_BLENDER_PYTHON")
    if other:
        return other
    subprocess.run([str(REPO / "scripts" / "setup-blender.sh")], check=True, timeout=900)
    return str(BLENDER_PYTHON)


@pytest.fixture(scope="session")
def extension_zip(tmp_path_factory):
    return build.build(str(tmp_path_factory.mktemp("ext")))


def test_build_bundles_pyzmq_for_every_platform_and_blender_validates_it(extension_zip, blender_python):
    with zipfile.ZipFile(extension_zip) as z:
        names = set(z.namelist())
        manifest = z.read("blender_manifest.toml").decode()
    wheels = sorted(n for n in names if n.startswith("wheels/"))
    assert any(w.startswith("wheels/mattebridge-0.1.0-py3-none-any") for w in wheels)
    covered = set().union(*(build.wheel_platforms(w[7:]) for w in wheels if "pyzmq" in w))
    assert covered == {"linux-x64", "macos-arm64", "macos-x64", "windows-x64"}
    assert all("-cp311-" in w for w in wheels if "pyzmq" in w)
    assert "__init__.py" in names and "build.py" not in names and not any("__pycache__" in n for n in names)
    assert 'license = ["SPDX:Apache-2.0"]' in manifest and 'id = "mattebridge"' in manifest
    with zipfile.ZipFile(next(REPO.joinpath("plugins/blender/build/wheels").glob("mattebridge-*.whl"))) as w:
        assert not [n for n in w.namelist() if n.startswith(("torch", "sam2"))]
    validator = (
        REPO / VALIDATOR
        if not os.environ.get("MATTEBRIDGE_BLENDER_PYTHON")
        else next(
            Path(blender_python).parent.parent.glob(
                "lib/python3.11/site-packages/bpy/*/scripts/addons_core/bl_pkg/cli/blender_ext.py"
            )
        )
    )
    proc = subprocess.run([blender_python, str(validator), "validate", extension_zip], capture_output=True, text=True)
    assert proc.returncode == 0 and "Success" in proc.stdout, proc.stdout + proc.stderr


def test_build_for_one_platform_keeps_only_its_wheels(tmp_path):
    out = build.build(str(tmp_path), platforms=["windows-x64"])
    with zipfile.ZipFile(out) as z:
        wheels = sorted(n for n in z.namelist() if n.startswith("wheels/"))
        manifest = z.read("blender_manifest.toml").decode()
    assert os.path.basename(out) == "mattebridge-0.1.0-windows-x64.zip"
    assert [w.split("-")[0] for w in wheels] == ["wheels/mattebridge", "wheels/pyzmq"]
    assert wheels[1].endswith("win_amd64.whl") and 'platforms = ["windows-x64"]' in manifest
    assert build.wheel_platforms("pyzmq-27.3.0-cp311-cp311-macosx_10_15_universal2.whl") == {"macos-arm64", "macos-x64"}
    with pytest.raises(build.BuildError, match="supports"):
        build.build(str(tmp_path), platforms=["linux-arm64"])


# --- a real Blender ---------------------------------------------------------------------------------------
def run_blender(python, script: str, args: dict, work: Path, timeout: float = 300):
    """Run tests/blender/<script> in Blender with its own user resources; (result dict, stderr)."""
    work.mkdir(parents=True, exist_ok=True)
    arg_path, out_path = work / f"{script}.args.json", work / f"{script}.result.json"
    arg_path.write_text(json.dumps(args))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "OCIO", "VIRTUAL_ENV")}
    env["BLENDER_USER_RESOURCES"] = str(work / "user")
    env["TMPDIR"] = str(work / "tmp")  # Blender's session temp folder stays with the test
    (work / "tmp").mkdir(exist_ok=True)
    proc = subprocess.run(
        [python, str(SCRIPTS / script), str(arg_path), str(out_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert out_path.exists(), f"{script} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    result = json.loads(out_path.read_text())
    assert "script_error" not in result, result["script_error"] + proc.stderr[-3000:]
    return result, proc.stderr


@pytest.fixture(scope="module")
def flow(blender_python, extension_zip, blender_server, projects, bedroom_plate):
    work = projects["flow"]  # the .blend here, its mattes in //mattes/ (allowed), Blender's user folders beside
    args = {
        "zip": extension_zip,
        "address": blender_server.address,
        "plate_dir": os.path.dirname(bedroom_plate),
        "blend": str(work / "shot.blend"),
        "render": str(work / "render.exr"),
        "prompts_json": str(work / "prompts.json"),
    }
    result, stderr = run_blender(blender_python, "bl_flow.py", args, work)
    return result, stderr, work, args, blender_server


def test_extension_runs_on_its_own_wheels(flow):
    r, _, work, *_ = flow
    extensions = str(work / "user" / "extensions")
    assert r["zmq_file"].startswith(extensions) and r["mattebridge_file"].startswith(extensions)


def test_prompts_through_operators_live_on_the_strip(flow):
    r, *_ = flow
    assert r["add_point"][0] == r["add_point_neg"][0] == r["add_box"][0] == "ok"
    assert r["prompts_before_track"] == {
        "version": 1,
        "objects": {
            "main": {
                "1005": {"points": [480.5, 300.5, 1.0, 60.0, 40.0, 0.0]},  # timeline 5 of a strip trimmed to 3..10
                "1008": {"box": [300.0, 100.0, 700.0, 500.0]},
            }
        },
    }


def test_preview_gives_the_frames_matte(flow):
    r, *_ = flow
    assert r["server_info"][0] == "ok" and r["server"]["status"] == "ok" and r["server"]["info"]["device"] == "cpu"
    assert r["preview"] == ["ok", ["FINISHED"]]
    assert list(r["previews"]) == ["Scene/plate/main/1005"]
    p = r["previews"]["Scene/plate/main/1005"]
    assert p["shape"] == [540, 960] and p["dtype"] == "float32" and 0 <= p["min"] <= p["max"] <= 1
    assert p["geometry"]["display"] == [0, 0, 960, 540]
    assert r["preview_box"] == ["ok", ["FINISHED"]]
    assert r["previews_after_box"] == ["Scene/plate/main/1005", "Scene/plate/main/1008"]
    # the plate's colour as Blender sees it, through Blender's own OCIO config, which the extension sends and
    # a server with the documented roots accepts although it lies outside them (every user can read it)
    [(colorspace, display, view, config)] = r["clip_colour"]
    assert r["ocio_sent"].endswith(os.path.join("datafiles", "colormanagement", "config.ocio"))
    assert colorspace == "ACEScg" and config == os.path.realpath(r["ocio_sent"])  # the server's reply
    assert (display, view) == ("sRGB", "Standard")
    assert not any(inside(config, root) for root in flow[4].roots)


def test_track_puts_a_matte_strip_above_with_a_mask_modifier(flow):
    r, *_ = flow
    assert r["track"] == ["ok", ["FINISHED"]]
    strips = r["after_track"]
    assert sorted(strips) == ["plate", "plate.main.matte"]
    src, matte = strips["plate"], strips["plate.main.matte"]
    assert matte["channel"] == src["channel"] + 1 and matte["mute"] and matte["matte_of"] == "plate/main"
    assert (matte["final_start"], matte["final_end"]) == (src["final_start"], src["final_end"]) == (3, 11)
    assert matte["colorspace"] == "Non-Color" and src["colorspace"] == "ACEScg"
    assert matte["scale"] == src["scale"]
    assert matte["files"] == [f"main.{f}.exr" for f in range(1003, 1011)]  # the source's frame numbers
    assert os.path.normpath(matte["directory"]) == os.path.normpath(
        os.path.join(os.path.dirname(flow[3]["blend"]), "mattes", "Scene", "plate")
    )
    assert src["modifiers"] == [
        {"name": "MatteBridge", "type": "MASK", "mask_type": "STRIP", "mask_strip": "plate.main.matte"}
    ]


def test_matte_files_carry_the_matte_in_r_g_b_and_a(flow):
    r, _, work, *_ = flow
    folder = work / "mattes" / "Scene" / "plate"
    assert sorted(os.listdir(folder)) == [f"{o}.{f}.exr" for o in ("main", "prop") for f in range(1003, 1011)]
    for name in ("main.1003.exr", "main.1005.exr", "main.1010.exr", "prop.1010.exr"):
        px, spec = read_exr(folder / name)
        assert spec.channelnames == ("R", "G", "B", "A") and (spec.width, spec.height) == (960, 540)
        for c in range(3):
            np.testing.assert_array_equal(px[..., c], px[..., 3])


def test_blender_renders_the_matte_as_the_strips_alpha(flow):
    r, _, work, args, _ = flow
    rendered, _ = read_exr(args["render"])  # timeline frame 5 = file 1005, rendered before the re-track
    matte, _ = read_exr(work / "mattes" / "Scene" / "plate" / "main.1005.exr")
    assert rendered.shape[:2] == (540, 960)
    assert np.abs(matte[..., 3]).max() > 0  # something to compare
    np.testing.assert_allclose(rendered[..., 3], matte[..., 3], atol=2e-3)


def test_retrack_replaces_the_matte_strip_and_repoints_its_users(flow):
    r, _, work, *_ = flow
    assert r["add_correction"][0] == r["add_second_object"][0] == "ok" and r["retrack"] == ["ok", ["FINISHED"]]
    strips = r["after_retrack"]
    assert sorted(strips) == ["plate", "plate.main.matte", "plate.prop.matte"]  # replaced, not stacked
    assert [strips[n]["channel"] for n in ("plate", "plate.main.matte", "plate.prop.matte")] == [2, 3, 4]
    assert strips["plate.prop.matte"]["files"] == [f"prop.{f}.exr" for f in range(1003, 1011)]
    mods = {m["name"]: m for m in strips["plate"]["modifiers"]}
    assert mods["MatteBridge"]["mask_strip"] == mods["Grade"]["mask_strip"] == "plate.main.matte"
    assert len(os.listdir(work / "mattes" / "Scene" / "plate")) == 16
    assert r["clear_frame"][0] == "ok"
    assert r["prompts_after_clear"]["objects"] == {
        "main": {
            "1005": {"points": [480.5, 300.5, 1.0, 60.0, 40.0, 0.0]},
            "1008": {"box": [300.0, 100.0, 700.0, 500.0]},
        },
        "prop": {"1010": {"points": [800.0, 100.0, 1.0]}},
    }


def test_exported_prompts_are_the_cli_schema(flow):
    r, _, _, args, _ = flow
    assert r["export"][0] == "ok"
    prompts = Prompts.load(args["prompts_json"])
    assert prompts.frames() == [1005, 1008, 1010] and sorted(prompts.objects) == ["main", "prop"]
    assert [(p.x, p.y, p.positive) for p in prompts.objects["main"][1005].points] == [
        (480.5, 300.5, True),
        (60, 40, False),
    ]


def test_prompts_survive_save_and_reopen(flow, blender_python, extension_zip, tmp_path):
    r0, _, _, args0, _ = flow
    r, _ = run_blender(
        blender_python,
        "bl_reopen.py",
        {"zip": extension_zip, "blend": args0["blend"], "prompts_json": str(tmp_path / "again.json")},
        tmp_path,
    )
    assert r["raw_before_addon"] == r0["prompts_after_clear"]
    assert json.loads((tmp_path / "again.json").read_text()) == store.to_prompts(r0["prompts_after_clear"]).to_json()
    assert r["mattes"] == ["plate.main.matte", "plate.prop.matte"] and r["settings_object"] == "main"
    assert ("MatteBridge", "MASK", "plate.main.matte") in [tuple(m) for m in r["modifiers"]]
    assert r["after_disable"][:2] == [False, False] and r["after_enable"][:2] == [True, True]
    assert r["after_enable"][2] == r["after_disable"][2] + 1  # its load_post handler, once
    assert r["prompts_after_reenable"] == r0["prompts_after_clear"]


def test_problems_are_reported_not_raised(blender_python, extension_zip, blender_server, projects, bedroom_plate):
    work = projects["problems"]
    broken, outside = work / "broken", work / "not_allowed"  # a plate folder the server allows, one it does not
    for folder in (broken, outside):
        folder.mkdir()
        for f in (1, 2):
            (folder / f"broken.{f:04d}.exr").write_text("not an image")
    args = {
        "zip": extension_zip,
        "plate_dir": os.path.dirname(bedroom_plate),
        "address": blender_server.address,
        "dead_address": f"tcp://127.0.0.1:{free_port()}",
        "matte_folder": str(work / "mattes"),
        "broken_dir": str(broken),
        "outside_plate_dir": str(outside),
        "outside_matte_folder": str(work / "not_allowed_mattes"),
    }
    t0 = time.monotonic()
    r, stderr = run_blender(blender_python, "bl_errors.py", args, work)
    expected = {
        "no_strip": "select an image strip",
        "color_strip": "'color' is a color strip",
        "gap_strip": "not consecutive frames",
        "not_finite": "finite",
        "bad_object": "object name 'no spaces/slashes': use 1-64 letters",  # core's check, core's words
        "dot_object": "not starting with '.'",
        "long_object": "at most 63 characters in Blender",
        "outside_plate": "outside the server's allowed roots",
        "outside_mattes": "outside the server's allowed roots",
        "nothing_prompted": "nothing prompted on 'plate'",
        "unsaved_blend": "save the .blend first",
        "hidden_prompt": "outside the strip's visible frames 1003-1005",
        "dead_info": "no reply",
        "dead_preview": "no reply",
        "dead_track": "no reply",
        "broken_preview": "server:",
        "prompt_tool_exec": "the prompt tool is interactive",
    }
    assert r["online_access"][0] is False
    assert r["online_access"][1][0] == "error" and "Online Access is off" in r["online_access"][1][1]
    for step, words in expected.items():
        status, message = r[step]
        assert status == "error" and message.startswith("Error: MatteBridge: ") and words in message, (step, message)
        assert "Traceback" not in message and "\n" not in message.strip(), (step, message)
    assert r["add_point"][0] == "ok" and r["broken_add"][0] == "ok" and r["max_object"][0] == "ok"
    assert str(work / "not_allowed") in r["outside_plate"][1] and "--allow-root" in r["outside_mattes"][1]
    assert sorted(r["strips_after_outside_track"]) == ["broken", "color", "elsewhere", "gappy", "plate"]
    assert not (work / "not_allowed_mattes").exists()
    assert r["server_state"][0] == "error" and "no reply" in r["server_state"][1]
    assert sorted(r["strips_after_dead_track"]) == ["color", "gappy", "plate"]
    assert "Traceback" not in stderr
    assert time.monotonic() - t0 < 60  # a dead server costs timeout x retries, not minutes


def test_geometry_and_timing_agree_with_blenders_renderer(blender_python, extension_zip, tmp_path):
    plate = np.zeros((48, 64), np.float32)
    plate[10:12, 40:42] = 1.0  # a 2x2 marker centred on plate pixel (41, 11)
    write_exr(tmp_path / "marker.exr", {"R": plate, "G": plate, "B": plate, "A": np.ones_like(plate)})
    window = np.zeros((30, 40), np.float32)
    window[9:11, 14:16] = 1.0  # centred on data-window pixel (15, 10) = display-window pixel (25, 15)
    write_exr(
        tmp_path / "window.exr",
        {"R": window, "G": window, "B": window, "A": np.ones_like(window)},
        display=(0, 0, 80, 60),
        data=(10, 5, 40, 30),
    )
    numbered = tmp_path / "numbered"
    numbered.mkdir()
    for n in range(1, 11):
        v = np.full((12, 16), n / 64, np.float32)
        write_exr(numbered / f"num.{n:04d}.exr", {"R": v, "G": v, "B": v, "A": np.ones_like(v)})
    r, _ = run_blender(
        blender_python,
        "bl_mapping.py",
        {
            "zip": extension_zip,
            "marker_plate": str(tmp_path / "marker.exr"),
            "marker": [41, 11],
            "numbered_dir": str(numbered),
            "work": str(tmp_path),
            "window_plate": str(tmp_path / "window.exr"),
            "window_marker": [25, 15],
        },
        tmp_path,
    )
    assert len(r["placements"]) == 8
    for case in r["placements"]:
        assert math.dist(case["expected"], case["seen"]) < 0.75, case
        assert math.dist(case["back"], (41, 11)) < 1e-3, case
    dw = r["data_window"]
    assert (
        dw["size"] == [40, 30]
        and math.dist(dw["expected"], dw["seen"]) < 0.75
        and math.dist(dw["back"], (25, 15)) < 1e-3
    )
    fits = {c["case"]: c for c in r["placements"]}
    for name in ("fit", "fill", "stretch", "original"):  # fit_scale is what Blender bakes into the transform
        np.testing.assert_allclose(fits[name]["fit_scale"], fits[name]["scale"], rtol=1e-6)
    for case in r["timing"]:
        for row in case["rows"]:
            assert row["blender_file"] == (row["predicted"] or 0), (case["case"], row)
        assert case["spec"][1] == f"{min(case['shown'])}-{max(case['shown'])}"
        assert case["spec"][2] == "Linear Rec.709" and case["spec"][3].endswith("colormanagement/config.ocio")
    reversed_case = next(c for c in r["timing"] if c["case"] == "reversed")
    assert reversed_case["shown"] == sorted(reversed_case["shown"], reverse=True)


def test_ui_path_returns_at_once_streams_progress_and_cancels(
    blender_python, extension_zip, blender_server, projects, bedroom_plate
):
    work = projects["ui"]  # mattes in //mattes/, next to ui.blend
    args = {
        "zip": extension_zip,
        "address": blender_server.address,
        "plate_dir": os.path.dirname(bedroom_plate),
        "blend": str(work / "ui.blend"),
    }
    r, stderr = run_blender(blender_python, "bl_async.py", args, work)
    assert r["info"] == ["ok", ["FINISHED"]] and r["info_status_at_return"] == "checking" and r["info_status"] == "ok"
    assert r["preview"] == ["ok", ["FINISHED"]] and r["previews_at_return"] == 0 and r["previews"] == 1
    assert r["track"] == ["ok", ["FINISHED"]] and r["state_at_return"] == "running" and r["timer_registered"]
    assert r["track_return_seconds"] < 0.5 * r["track_seconds"]  # returned before the work was done
    assert r["state"] == "done" and r["message"][0] == "INFO" and "tracked 8 frame(s)" in r["message"][1]
    assert len(r["progress_samples"]) >= 3 and r["progress_samples"][-1] == [8, 8]
    assert r["tick_when_idle"] is None and r["mattes"] == [["plate.main.matte", 4]]  # channel 3 is taken
    assert r["track_while_running"][0] == "error" and "already running" in r["track_while_running"][1]
    assert r["cancel"] == ["ok", ["FINISHED"]] and r["cancel_state"] == "cancelled"
    assert r["cancel_done"][0] < 8 and r["cancel_message"][0] == "WARNING"
    assert r["mattes_after_cancel"] == [["plate.main.matte", "first run"]]  # a cancelled track changes no strip
    assert "Traceback" not in stderr
