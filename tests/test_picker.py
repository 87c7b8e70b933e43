"""The prompt window (`mattebridge pick`) driven offscreen with real mouse and keyboard events (QTest)
against a real `mattebridge serve` (the random-weight tiny model of `mb_server`).

Every wait has a deadline; a window is always closed, even when a test fails.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, free_port, read_exr, write_exr

os.environ["QT_QPA_PLATFORM"] = "offscreen"  # never a real window, whatever the machine has

from PySide6.QtCore import QEventLoop, QPoint, QPointF, Qt  # noqa: E402
from PySide6.QtGui import QWheelEvent  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from mattebridge.core.image.plate import Geometry  # noqa: E402
from mattebridge.core.picker import add_arguments  # noqa: E402
from mattebridge.core.picker.app import build_window  # noqa: E402
from mattebridge.core.picker.plates import alpha_preview, preview_shape  # noqa: E402
from mattebridge.core.wire.client import Client  # noqa: E402
from mattebridge.core.wire.prompts import Prompts  # noqa: E402

ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture(scope="module")
def qapp():
    return QApplication.instance() or QApplication(["test_picker"])


def wait_until(cond, what: str, timeout: float = 30.0) -> None:
    app = QApplication.instance()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        app.processEvents(QEventLoop.AllEvents, 20)
        if cond():
            return
        time.sleep(0.005)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def subject_plate(folder: Path, frames, size=(160, 96), aspect=1.0, display=None, data=None) -> str:
    """A plate with a bright square subject moving right over a darker gradient."""
    w, h = size
    for i, f in enumerate(frames):
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        base = 0.05 + 0.1 * x / w
        subject = ((np.abs(x - (0.35 * w + 2 * i)) < 0.15 * w) & (np.abs(y - 0.5 * h) < 0.25 * h)).astype(np.float32)
        write_exr(
            folder / f"plate.{f:04d}.exr",
            {"R": base + 0.8 * subject, "G": base + 0.5 * subject, "B": base + 0.1 * subject},
            display=display,
            data=data,
            pixel_aspect=aspect,
        )
    return str(folder / "plate.####.exr")


@contextmanager
def picker(*argv):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    window = build_window(parser.parse_args([str(a) for a in argv]))
    window.resize(1000, 650)
    window.show()
    try:
        wait_until(
            lambda: window.connected and window.shown_frame == window.frame, "the window to connect and show its plate"
        )
        wait_until(window.idle, "the server to answer the loaded prompts")
        yield window
    finally:
        window.close()
        QApplication.instance().processEvents()


def widget_pixel(window, x: float, y: float) -> QPoint:
    wx, wy = window.canvas.view.to_widget(x, y)
    return QPoint(int(np.floor(wx)), int(np.floor(wy)))


def click(window, x: float, y: float, button=Qt.LeftButton, mods=Qt.NoModifier):
    """Click the widget pixel over plate point (x, y); returns where that pixel's centre is on the plate."""
    pos = widget_pixel(window, x, y)
    QTest.mouseClick(window.canvas, button, mods, pos)
    wait_until(window.idle, "the matte of the click")
    return window.canvas.view.to_image(pos.x() + 0.5, pos.y() + 0.5)


def drag(window, start, end, button=Qt.LeftButton, mods=Qt.NoModifier) -> None:
    a, b = widget_pixel(window, *start), widget_pixel(window, *end)
    QTest.mousePress(window.canvas, button, mods, a)
    for t in (0.25, 0.5, 0.75, 1.0):
        QTest.mouseMove(window.canvas, QPoint(int(a.x() + t * (b.x() - a.x())), int(a.y() + t * (b.y() - a.y()))))
    QTest.mouseRelease(window.canvas, button, mods, b)
    wait_until(window.idle, "the matte of the drag")


def wheel(window, at: QPoint, notches: int) -> None:
    event = QWheelEvent(
        QPointF(at),
        QPointF(window.canvas.mapToGlobal(at)),
        QPoint(0, 0),
        QPoint(0, 120 * notches),
        Qt.NoButton,
        Qt.NoModifier,
        Qt.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(window.canvas, event)


def key(window, k, mods=Qt.NoModifier) -> None:
    QTest.keyClick(window.canvas, k, mods)
    wait_until(window.idle, "the server after a key")


def server_prompts(window) -> dict:
    """The prompts the server holds for the window's clip, as {object: {frame: FramePrompt json}}."""
    held = Prompts.from_json(window.worker.clip.prompts())
    return {o: {f: fp.to_json() for f, fp in per.items()} for o, per in held.objects.items()}


def window_prompts(window) -> dict:
    doc = window.doc.prompts()
    return {o: {f: fp.to_json() for f, fp in per.items()} for o, per in doc.objects.items()}


def points(window, frame=None, obj=None):
    fp = window.doc.get(window.frame if frame is None else frame, obj or window.active)
    return [] if fp is None else [(p.x, p.y, p.positive) for p in fp.points]


def test_clicks_land_on_plate_pixels_at_every_zoom(qapp, mb_server, tmp_path):
    # display window 160x96; the data window is smaller and offset: clicks are display-window pixels
    plate = subject_plate(tmp_path, [1001, 1002], display=(0, 0, 160, 96), data=(8, 4, 144, 88))
    with picker(plate, "--server", mb_server.address, "--save", tmp_path / "p.json") as w:
        view = w.canvas.view
        targets = [(56.5, 48.5), (20.25, 10.75), (150.5, 90.5)]
        seen = []

        def check(target):
            got = click(w, *target)
            stored = points(w)[-1]
            assert stored[:2] == pytest.approx(got)  # the point is exactly where the clicked pixel is on the plate
            assert (
                abs(stored[0] - target[0]) <= 0.5 / view.sx + 1e-9
                and abs(stored[1] - target[1]) <= 0.5 / view.sy + 1e-9
            )
            seen.append(stored)

        check(targets[0])  # fitted
        key(w, Qt.Key_1)  # 100%
        assert view.zoom == 1.0
        check(targets[1])
        wheel(w, widget_pixel(w, 100.5, 60.5), 5)  # zoom about the cursor
        assert view.zoom == pytest.approx(1.25**5)
        check(targets[2])
        for _ in range(3):
            key(w, Qt.Key_Plus)
        drag(w, (100.0, 60.0), (90.0, 55.0), button=Qt.MiddleButton)  # pan: no prompt
        assert len(points(w)) == 3 and not w.canvas.fitted
        key(w, Qt.Key_F)  # fit again
        assert w.canvas.fitted
        check((100.5, 33.5))
        drag(w, (10.0, 10.0), (40.0, 30.0))  # a box
        box = w.doc.get(1001, "main").box
        assert box == pytest.approx((10.0, 10.0, 40.0, 30.0), abs=1.0 / view.zoom)
        assert server_prompts(w) == window_prompts(w)  # the server holds exactly these coordinates
        assert w.mattes[1001]["main"].shape == preview_shape(Geometry((0, 0, 160, 96), (8, 4, 144, 88)), 2048)


def test_anamorphic_plate_shown_wide_clicked_in_plate_pixels(qapp, mb_server, tmp_path):
    plate = subject_plate(tmp_path, [1, 2], size=(120, 80), aspect=2.0)
    with picker(plate, "--server", mb_server.address, "--save", tmp_path / "p.json") as w:
        view = w.canvas.view
        assert view.pixel_aspect == 2.0
        x, y, width, height = view.image_rect()
        assert width / height == pytest.approx(3.0)  # 120 x 80 pixels twice as wide as high
        for zoom_key in (None, Qt.Key_1, Qt.Key_Plus):
            if zoom_key is not None:
                key(w, zoom_key)
            got = click(w, 90.5, 30.5)
            assert got[0] == pytest.approx(90.5, abs=0.5 / view.sx) and got[1] == pytest.approx(30.5, abs=0.5 / view.sy)
        key(w, Qt.Key_F)
        drag(w, (20.0, 10.0), (60.0, 50.0))
        assert w.doc.get(1, "main").box == pytest.approx((20.0, 10.0, 60.0, 50.0), abs=1.0 / view.zoom)
        held = server_prompts(w)["main"][1]
        assert held["points"][0]["x"] == pytest.approx(90.5, abs=0.5 / view.sx)  # never 45 or 181
        assert held["box"] == pytest.approx([20.0, 10.0, 60.0, 50.0], abs=1.0 / view.zoom)
        # the overlay of the anamorphic plate covers the display window, stretched like the plate
        assert w.mattes[1]["main"].shape == (80, 120)


def test_overlay_is_the_servers_matte_and_toggles(qapp, mb_server, tmp_path):
    plate = subject_plate(tmp_path, [1, 2, 3])
    mask = np.zeros((96, 160), np.float32)
    mask[20:70, 90:150] = 1.0
    write_exr(tmp_path / "mask.exr", {"A": mask})
    prompts = tmp_path / "in.json"
    prompts.write_text(
        json.dumps(
            {
                "version": 1,
                "objects": [
                    {"name": "prop", "frames": [{"frame": 2, "mask": str(tmp_path / "mask.exr")}]},
                    {"name": "hero", "frames": []},
                ],
            }
        )
    )
    with picker(plate, "--server", mb_server.address, "--prompts", prompts, "--save", tmp_path / "p.json") as w:
        assert w.frame == 2 and w.doc.objects == ["prop", "hero"]
        # a mask prompt is that frame's output: the overlay is tinted exactly inside it
        inside, outside = widget_pixel(w, 120.5, 45.5), widget_pixel(w, 40.5, 45.5)
        with_overlay = w.canvas.grab().toImage()
        key(w, Qt.Key_O)
        assert not w.canvas.overlay_visible
        plain = w.canvas.grab().toImage()
        key(w, Qt.Key_O)
        assert with_overlay.pixelColor(inside) != plain.pixelColor(inside)
        assert with_overlay.pixelColor(outside) == plain.pixelColor(outside)
        assert w.mattes[2]["prop"][45, 120] >= 250 and w.mattes[2]["prop"][45, 40] <= 5

        # a click: the overlay is the server's matte for it (the same as asking the server directly)
        key(w, Qt.Key_BracketRight)
        assert w.active == "hero"
        got = click(w, 56.5, 48.5)
        with Client(mb_server.address, timeout=30) as c:
            clip = c.open_clip(plate, "1-3")
            matte = clip.prompt(2, "hero", points=[(got[0], got[1], True)])
            expected = alpha_preview(matte.alpha["hero"], Geometry.from_json(matte.geometry), (96, 160))
            clip.close()
        assert np.abs(w.mattes[2]["hero"].astype(int) - expected.astype(int)).max() <= 1
        layers = dict(w.overlay_layers(2))
        assert set(layers) == {"prop", "hero"}
        key(w, Qt.Key_Right)  # frame 3 has no prompt and no track yet: no overlay
        wait_until(lambda: w.shown_frame == 3, "frame 3 to show")
        assert w.overlay_layers(3) == [] and w.canvas.overlay is None


def test_keyboard_and_mouse_editing_stays_in_step_with_the_server(qapp, mb_server, tmp_path):
    plate = subject_plate(tmp_path, list(range(1001, 1016)))
    with picker(plate, "--server", mb_server.address, "--save", tmp_path / "p.json") as w:
        click(w, 50.5, 40.5)
        click(w, 70.5, 40.5, button=Qt.RightButton)  # background
        click(w, 30.5, 20.5, mods=Qt.ShiftModifier)  # background too
        assert [p[2] for p in points(w)] == [True, False, False]
        key(w, Qt.Key_Z, Qt.ControlModifier)
        assert len(points(w)) == 2 and server_prompts(w) == window_prompts(w)
        key(w, Qt.Key_Z, Qt.ControlModifier | Qt.ShiftModifier)
        assert len(points(w)) == 3 and server_prompts(w) == window_prompts(w)
        key(w, Qt.Key_Z, Qt.ControlModifier)
        key(w, Qt.Key_Y, Qt.ControlModifier)
        assert len(points(w)) == 3

        click(w, 70.5, 40.5)  # on an existing point: selects it, adds nothing
        assert len(points(w)) == 3 and w.canvas.selection == ("point", 1)
        key(w, Qt.Key_T)  # flip it to foreground
        assert points(w)[1][2] is True
        drag(w, (70.5, 40.5), (80.5, 50.5))  # move it
        assert points(w)[1][:2] == pytest.approx((80.5, 50.5), abs=1.0 / w.canvas.view.zoom)
        key(w, Qt.Key_Delete)
        assert len(points(w)) == 2 and server_prompts(w) == window_prompts(w)

        drag(w, (20.0, 20.0), (60.0, 60.0))
        drag(w, (60.0, 60.0), (100.0, 80.0))  # drag the corner: reshape
        assert w.doc.get(1001, "main").box == pytest.approx((20.0, 20.0, 100.0, 80.0), abs=1.0 / w.canvas.view.zoom)
        click(w, 100.0, 80.0)  # select the box by its corner, then delete it
        key(w, Qt.Key_Backspace)
        assert w.doc.get(1001, "main").box is None

        key(w, Qt.Key_Right)
        assert w.frame == 1002
        key(w, Qt.Key_Right, Qt.ShiftModifier)
        assert w.frame == 1012
        key(w, Qt.Key_End)
        assert w.frame == 1015
        key(w, Qt.Key_Left)
        assert w.frame == 1014
        key(w, Qt.Key_Home)
        assert w.frame == 1001
        key(w, Qt.Key_N)  # a new object, then a point on another frame
        assert w.doc.objects == ["main", "object2"] and w.active == "object2"
        key(w, Qt.Key_Right)
        wait_until(lambda: w.shown_frame == 1002, "frame 1002 to show")
        click(w, 60.5, 50.5)
        key(w, Qt.Key_BracketLeft)
        assert w.active == "main"
        assert server_prompts(w) == window_prompts(w)
        assert sorted(w.framebar.prompted) == [1001, 1002]
        key(w, Qt.Key_Equal)
        assert w.canvas.view.zoom > 1.0 and not w.canvas.fitted
        key(w, Qt.Key_Minus)
        key(w, Qt.Key_F)
        assert w.canvas.fitted


def test_saved_prompts_reload_identically_into_a_new_window(qapp, mb_server, tmp_path):
    plate = subject_plate(tmp_path, [1, 2, 3, 4])
    save = tmp_path / "sh010.prompts.json"
    with picker(plate, "--server", mb_server.address, "--save", save) as w:
        click(w, 40.5, 40.5)
        drag(w, (30.0, 20.0), (80.0, 70.0))
        key(w, Qt.Key_N)
        key(w, Qt.Key_End)
        click(w, 100.5, 50.5, button=Qt.RightButton)
        click(w, 110.5, 50.5)
        key(w, Qt.Key_S, Qt.ControlModifier)
        saved = json.loads(save.read_text())
        assert saved == w.doc.to_json() and not w.doc.dirty
    first = save.read_bytes()
    with picker(plate, "--server", mb_server.address, "--prompts", save, "--save", save) as again:
        assert again.doc.to_json() == saved
        assert again.frame == 1  # opens on the first prompted frame
        assert server_prompts(again) == window_prompts(again)  # every prompt went to the server
        assert set(again.mattes) == {1, 4}
        key(again, Qt.Key_S, Qt.ControlModifier)
    assert save.read_bytes() == first
    held = Prompts.load(str(save))  # the file `mattebridge track --prompts` reads
    assert held.objects["object2"][4].points[0].positive is False


def test_track_shows_progress_cancels_and_resumes(qapp, mb_server, tmp_path):
    frames = list(range(1001, 1013))
    plate = subject_plate(tmp_path, frames)
    out = tmp_path / "mattes" / "{object}.####.exr"
    with picker(
        plate,
        "--server",
        mb_server.address,
        "--save",
        tmp_path / "p.json",
        "--out",
        out,
        "--channels",
        "RGBA",
        "--frame",
        "1004",
    ) as w:
        click(w, 60.5, 48.5)
        progress = []
        w.worker.trackProgress.connect(lambda p: progress.append(p["frame"]))
        key(w, Qt.Key_Return, Qt.ControlModifier)
        assert w.tracking and not w.canvas.editable and w.cancel_button.isEnabled()
        wait_until(lambda: progress, "the first tracked frame")
        QTest.keyClick(w.canvas, Qt.Key_Escape)
        wait_until(lambda: not w.tracking, "the track to stop")
        assert w.result["status"] == "cancelled" and w.exit_code == 1
        assert len(progress) < len(frames)
        assert w.canvas.editable and w.track_button.isEnabled()

        QTest.mouseClick(w.track_button, Qt.LeftButton)
        wait_until(lambda: not w.tracking, "the second track", timeout=90)
        assert w.result["status"] == "done" and w.exit_code == 0
        assert w.progress.value() == w.progress.maximum() == len(frames)
        assert w.result["summary"]["frames_skipped"] >= 1  # frames the cancelled run wrote are kept
        paths = w.result["mattes"]["main"]
        assert [Path(p).name for p in paths] == [f"main.{f}.exr" for f in frames]
        pixels, spec = read_exr(paths[-1])
        assert list(spec.channelnames) == ["R", "G", "B", "A"]
        assert np.array_equal(pixels[..., 0], pixels[..., 3]) and np.array_equal(pixels[..., 2], pixels[..., 3])
        key(w, Qt.Key_End)  # scrub: the tracked matte shows on frames without a prompt
        wait_until(lambda: w.shown_frame == 1012, "the last frame to show")
        assert [obj for obj, _ in w.overlay_layers(1012)] == ["main"]
        assert w.canvas.overlay is not None
        assert sorted(w.framebar.tracked) == frames
        assert json.loads((tmp_path / "p.json").read_text()) == w.doc.to_json()  # saved with the track


def test_screenshot_on_real_footage(qapp, mb_server, bedroom_plate, tmp_path):
    with picker(
        bedroom_plate,
        "--server",
        mb_server.address,
        "--save",
        tmp_path / "p.json",
        "--frame",
        "1005",
        "--title",
        "bedroom (screenshot)",
    ) as w:
        assert w.source.transform.colorspace == "ACEScg"  # the plate's metadata, shown through the default view
        click(w, 300.5, 300.5)
        click(w, 520.5, 120.5, button=Qt.RightButton)
        drag(w, (200.0, 180.0), (420.0, 460.0))
        key(w, Qt.Key_N)
        drag(w, (600.0, 250.0), (800.0, 420.0))
        key(w, Qt.Key_BracketLeft)
        ARTIFACTS.mkdir(exist_ok=True)
        assert w.grab().save(str(ARTIFACTS / "picker.png"))
        assert (ARTIFACTS / "picker.png").stat().st_size > 10000


def run_picker(*argv, timeout=120):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    proc = subprocess.run(
        [sys.executable, "-m", "mattebridge.cli", "pick", *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    return proc.returncode, proc.stdout, proc.stderr


def test_command_line_auto_track_check_and_errors(mb_server, tmp_path):
    plate = subject_plate(tmp_path, [11, 12, 13])
    prompts = tmp_path / "p.json"
    prompts.write_text(
        json.dumps(
            {
                "version": 1,
                "objects": [
                    {"name": "hero", "frames": [{"frame": 12, "points": [{"x": 60.5, "y": 48.5, "positive": True}]}]}
                ],
            }
        )
    )
    rc, out, err = run_picker(
        plate,
        "--server",
        mb_server.address,
        "--prompts",
        prompts,
        "--auto-track",
        "--print-result",
        "--channels",
        "RGBA",
        "--out",
        tmp_path / "m" / "{object}.####.exr",
    )
    assert rc == 0, err
    result = json.loads(out)
    assert result["status"] == "done" and result["exit_code"] == 0 and result["frames"] == [11, 13]
    assert [Path(p).name for p in result["mattes"]["hero"]] == ["hero.0011.exr", "hero.0012.exr", "hero.0013.exr"]

    dead = f"tcp://127.0.0.1:{free_port()}"
    rc, out, err = run_picker(plate, "--server", dead, "--check", "--timeout", "0.5", "--print-result")
    assert rc == 3 and json.loads(out)["status"] == "error"
    assert err.strip().count("\n") == 0 and "not running" in err and dead in err and "mattebridge serve" in err
    rc, out, err = run_picker(plate, "--server", mb_server.address, "--check")
    assert rc == 0 and out == ""
    rc, out, err = run_picker(
        plate, "--server", dead, "--timeout", "0.5", "--prompts", prompts, "--auto-track", "--print-result"
    )
    assert rc == 3 and json.loads(out)["status"] == "error" and "not running" in json.loads(out)["message"]

    rc, out, err = run_picker(tmp_path / "missing.####.exr", "--server", mb_server.address)
    assert rc == 2 and err.startswith("mattebridge: error:") and "missing.####.exr" in err and out == ""


def test_a_clip_lost_with_its_worker_is_opened_again_with_every_prompt(qapp, checkpoint, tmp_path):
    """`serve --devices`: the worker holding the window's clip is killed; the next click reconnects, the window
    sends every prompt again, and the server ends up holding exactly the window's prompts."""
    import signal

    from conftest import ServerProcess

    plate = subject_plate(tmp_path, [1, 2, 3])
    server = ServerProcess(checkpoint, tmp_path, "--devices", "cpu,cpu")
    try:
        with picker(plate, "--server", server.address, "--save", tmp_path / "p.json") as w:
            click(w, 56.5, 48.5)
            first = w.worker.clip.id
            with Client(server.address, timeout=30) as c:
                (holder,) = [x for x in c.status()["workers"] if x["clips"] == 1]
                os.kill(holder["pid"], signal.SIGKILL)
                wait_until(lambda: c.status()["workers"][holder["worker"]]["restarts"] == 1, "the dead worker seen")
            pos = widget_pixel(w, 30.5, 20.5)
            QTest.mouseClick(w.canvas, Qt.LeftButton, Qt.ShiftModifier, pos)  # a second, negative point
            wait_until(lambda: w.idle() and w.worker.clip is not None and w.worker.clip.id != first, "a new clip")
            assert len(points(w)) == 2
            assert server_prompts(w) == window_prompts(w)
            assert w.mattes[w.frame][w.active] is not None
    finally:
        server.stop()
