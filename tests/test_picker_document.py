"""The prompt window's Qt-free parts: the edited prompts with undo/redo, the view mapping (zoom, pan,
pixel aspect), the plate preview through OCIO, and the command-line defaults."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from conftest import write_exr

from mattebridge.core.errors import MatteBridgeError
from mattebridge.core.image.plate import Geometry, read_plate, to_display
from mattebridge.core.image.resample import area_resize
from mattebridge.core.picker import add_arguments
from mattebridge.core.picker.app import default_out, options_from_args
from mattebridge.core.picker.document import PromptDocument, wire_prompt
from mattebridge.core.picker.plates import PlateSource, alpha_preview, discover_frames, plate_frames
from mattebridge.core.picker.viewmap import ViewMap
from mattebridge.core.wire.prompts import Prompts
from mattebridge.core.wire.sequence import FrameRange


def test_edits_report_the_keys_they_change_and_undo_redo_restores_them():
    doc = PromptDocument(objects=["hero"])
    assert doc.add_point(1001, "hero", 10.5, 20.5) == {(1001, "hero")}
    assert doc.add_point(1001, "hero", 30.5, 40.5, positive=False) == {(1001, "hero")}
    assert doc.set_box(1005, "hero", (50, 60, 10, 20)) == {(1005, "hero")}
    assert doc.get(1005, "hero").box == (10.0, 20.0, 50.0, 60.0)  # normalised to x0 < x1, y0 < y1
    doc.add_object("prop")
    doc.add_point(1001, "prop", 5, 5)
    assert doc.move_point(1001, "hero", 1, 31.5, 41.5) == {(1001, "hero")}
    assert doc.move_point(1001, "hero", 1, 31.5, 41.5) == set()  # no change: nothing to send, nothing to undo
    full = doc.to_json()
    assert [o["name"] for o in full["objects"]] == ["hero", "prop"]

    assert doc.delete_point(1001, "prop", 0) == {(1001, "prop")}
    assert doc.get(1001, "prop") is None  # a frame with nothing left is dropped (the server gets `clear`)
    assert doc.undo() == {(1001, "prop")}
    assert doc.to_json() == full
    assert doc.redo() == {(1001, "prop")}
    assert doc.undo() == {(1001, "prop")}

    assert doc.set_box(1005, "hero", None) == {(1005, "hero")}
    assert doc.frames("hero") == [1001]
    assert doc.undo() == {(1005, "hero")}
    assert doc.to_json() == full

    renamed = doc.rename_object("hero", "heroine")
    assert renamed == {(1001, "hero"), (1005, "hero"), (1001, "heroine"), (1005, "heroine")}
    assert doc.objects == ["heroine", "prop"]
    assert doc.undo() == renamed
    assert doc.objects == ["hero", "prop"]

    assert doc.remove_object("prop") == {(1001, "prop")}
    assert doc.objects == ["hero"]
    doc.undo()
    assert doc.to_json() == full and doc.objects == ["hero", "prop"]
    assert doc.toggle_point(1001, "hero", 0) == {(1001, "hero")}
    assert doc.get(1001, "hero").points[0].positive is False
    assert wire_prompt(doc.get(1001, "hero")) == {
        "points": [(10.5, 20.5, False), (31.5, 41.5, False)],
        "box": None,
        "mask": None,
    }


def test_refused_edits_change_nothing():
    doc = PromptDocument(objects=["main"])
    with pytest.raises(MatteBridgeError, match="no object 'nope'"):
        doc.add_point(1, "nope", 1, 1)
    with pytest.raises(MatteBridgeError, match="width and a height"):
        doc.set_box(1, "main", (5, 5, 5, 9))
    with pytest.raises(MatteBridgeError, match="letters, digits"):
        doc.add_object("bad name")
    with pytest.raises(MatteBridgeError, match="already exists"):
        doc.add_object("main")
    assert not doc.can_undo and doc.is_empty()


def test_saved_json_is_the_track_prompts_format_and_reloads_identically(tmp_path):
    doc = PromptDocument(objects=["hero", "empty", "prop"])
    doc.add_point(1001, "hero", 812.5, 540.5)
    doc.add_point(1040, "hero", 300.25, 200.75, positive=False)
    doc.set_box(1001, "hero", (700, 300, 1000, 900))
    doc.add_point(1010, "prop", 1.5, 2.5)
    path = tmp_path / "p.json"
    doc.save(str(path))
    assert not doc.dirty
    again = PromptDocument.load(str(path))
    assert again.to_json() == doc.to_json()
    assert again.objects == ["hero", "empty", "prop"]  # an object without prompts survives the round trip
    again.save(str(tmp_path / "q.json"))
    assert (tmp_path / "q.json").read_bytes() == path.read_bytes()
    loaded = Prompts.load(str(path))  # what `mattebridge track --prompts` reads
    assert loaded.objects["hero"][1040].points[0].positive is False
    assert loaded.objects["hero"][1001].box == (700.0, 300.0, 1000.0, 900.0)
    doc_json = json.loads(path.read_text())
    assert doc_json["version"] == 1


def test_a_hostile_or_unsavable_prompts_file_is_one_line_and_leaves_nothing(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text('{"version": 1, "objects": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(MatteBridgeError, match="deep.json") as e:  # was a RecursionError (a traceback)
        PromptDocument.load(str(deep))
    assert "\n" not in str(e.value)
    doc = PromptDocument(objects=["hero"])
    doc.add_point(1001, "hero", 1.5, 2.5)
    target = tmp_path / "gone" / "p.json"
    target.parent.mkdir()
    target.mkdir()  # the save's rename onto a folder fails after its temp file was written
    with pytest.raises(MatteBridgeError, match="cannot save prompts"):
        doc.save(str(target))
    assert sorted(p.name for p in target.parent.iterdir()) == ["p.json"]  # no temp file left beside it


@pytest.mark.parametrize("aspect", [1.0, 2.0, 0.5])
def test_view_mapping_keeps_plate_coordinates_free_of_pixel_aspect(aspect):
    view = ViewMap(1920, 1080, aspect)
    view.fit(1000, 700)
    x, y, w, h = view.image_rect()
    assert w / h == pytest.approx(1920 * aspect / 1080)  # shown with its pixel aspect
    assert (w <= 1000 + 1e-6) and (h <= 700 + 1e-6)
    for zoom in (view.zoom, 1.0, 3.7):
        view.zoom_about(zoom, 400.5, 300.5)
        for px, py in ((0.5, 0.5), (812.5, 540.5), (1919.5, 1079.5)):
            wx, wy = view.to_widget(px, py)
            assert view.to_image(wx, wy) == pytest.approx((px, py))
            assert wx == pytest.approx(view.ox + px * zoom * aspect)  # x stretched by the aspect on screen only
    before = view.to_image(123.5, 456.5)
    view.zoom_about(view.zoom * 2, 123.5, 456.5)  # zooming about the cursor keeps the plate point under it
    assert view.to_image(123.5, 456.5) == pytest.approx(before)
    view.pan(10, -5)
    assert view.to_image(133.5, 451.5) == pytest.approx(before)


def test_preview_is_the_display_window_through_the_ocio_view(tmp_path):
    rng = np.random.default_rng(1)
    channels = {c: rng.random((40, 60), dtype=np.float32) * 2 for c in "RGB"}
    write_exr(tmp_path / "p.0007.exr", channels, display=(0, 0, 80, 50), data=(10, 5, 60, 40), pixel_aspect=2.0)
    source = PlateSource(str(tmp_path / "p.####.exr"), FrameRange(7, 7), colorspace="ACEScg", preview_size=40)
    shown = source.preview(7)
    assert shown.rgb.shape == (25, 40, 3) and shown.rgb.dtype == np.uint8
    assert source.geometry(7) == Geometry((0, 0, 80, 50), (10, 5, 60, 40), 2.0)
    plate = read_plate(str(tmp_path / "p.0007.exr"))
    linear = area_resize(to_display(plate.pixels, plate.geometry), 25, 40)  # downsample in linear light first
    expected = np.clip(source.transform.apply(linear), 0, 1) * 255
    assert np.abs(shown.rgb.astype(np.float32) - expected).max() <= 0.51
    assert source.transform.colorspace == "ACEScg" and source.transform.view  # the config's default view
    assert shown.rgb[0, 0].tolist() == [
        int(v) for v in np.clip(source.transform.apply(np.zeros((1, 1, 3), np.float32)), 0, 1)[0, 0] * 255 + 0.5
    ]  # outside the data window: black through the view

    alpha = np.zeros((40, 60), np.float32)
    alpha[:, 30:] = 1.0  # right half of the data window = x 40..70 of the display window
    small = alpha_preview(alpha, plate.geometry, (25, 40))
    assert small[12, 5] == 0 and small[12, 25] == 255 and small[12, 39] == 0


def test_frames_come_from_disk_and_defaults_follow_the_plate(tmp_path):
    for f in (1001, 1002, 1004):
        write_exr(tmp_path / f"sh010.{f:04d}.exr", {"R": np.zeros((4, 4), np.float32)})
    write_exr(tmp_path / "other.0001.exr", {"R": np.zeros((4, 4), np.float32)})
    assert discover_frames(str(tmp_path / "sh010.####.exr")) == FrameRange(1001, 1004)
    assert discover_frames(str(tmp_path / "sh010.%04d.exr")) == FrameRange(1001, 1004)
    assert discover_frames(str(tmp_path / "still.exr")) is None
    assert plate_frames(str(tmp_path / "other.0001.exr"), None, None) == FrameRange(1, 1)
    assert plate_frames(str(tmp_path / "other.0001.exr"), None, 7) == FrameRange(7, 7)
    with pytest.raises(MatteBridgeError, match="no frames found"):
        discover_frames(str(tmp_path / "nothing.####.exr"))
    with pytest.raises(MatteBridgeError, match="needs a frame token"):
        plate_frames(str(tmp_path / "other.0001.exr"), "1-5", None)

    assert default_out("/s/sh010.####.exr", False) == "/s/mattes/sh010_{object}.####.exr"
    assert default_out("/s/sh010_plate.%06d.exr", False) == "/s/mattes/sh010_plate_{object}.######.exr"
    assert default_out("/s/still.tif", True) == "/s/mattes/still_{object}.exr"

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    prompts = tmp_path / "p.json"
    prompts.write_text(
        json.dumps(
            {"version": 1, "objects": [{"name": "a", "frames": [{"frame": 1002, "points": [{"x": 1, "y": 1}]}]}]}
        )
    )
    options, doc = options_from_args(parser.parse_args([str(tmp_path / "sh010.####.exr"), "--prompts", str(prompts)]))
    assert options.frames == FrameRange(1001, 1004) and options.frame == 1002  # opens on the first prompted frame
    assert doc.objects == ["a"]
    with pytest.raises(MatteBridgeError, match="outside the plate's frames"):
        options_from_args(parser.parse_args([str(tmp_path / "sh010.####.exr"), "--frame", "900"]))
    with pytest.raises(MatteBridgeError, match="--auto-track needs --prompts"):
        options_from_args(parser.parse_args([str(tmp_path / "sh010.####.exr"), "--auto-track"]))
