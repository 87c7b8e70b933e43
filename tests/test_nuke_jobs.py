"""The Preview/Track jobs against a real `mattebridge serve` on loopback (no Nuke: a plain Python host)."""

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "nuke"))
from conftest import free_port, read_exr  # noqa: E402
from nuke_harness import small_plate  # noqa: E402

from mattebridge_nuke import jobs, sources  # noqa: E402
from mattebridge_nuke.cache import open_cache  # noqa: E402
from mattebridge_nuke.prompts import ObjectKnobs, PointKnob, canonical  # noqa: E402


def request(address, pattern, cache_root, objects, first=1001, last=1006, fmt=(100, 70, 1.0), **kw):
    frames = range(first, last + 1)
    source = kw.pop("source", None) or jobs.Source("the plate", sources.direct_stamps(pattern, frames, None), pattern)
    return jobs.JobRequest(
        "MatteBridge1",
        address,
        {"edge": kw.pop("edge", "soft")},
        fmt,
        canonical(objects),
        first,
        last,
        str(cache_root),
        source,
        **kw,
    )


def hero(*keys, box=None, bg=None):
    """A foreground point keyed on frames (frame, x, y), Nuke space (y up)."""
    points = [PointKnob("hero +1", True, {float(f): (x, y) for f, x, y in keys})]
    if bg:
        points.append(PointKnob("hero -1", False, {float(f): (x, y) for f, x, y in bg}))
    return ObjectKnobs("hero", points=points, box=box or {})


@pytest.fixture()
def plate(tmp_path):
    return small_plate(tmp_path / "plate")


def test_preview_writes_that_frames_matte_in_the_plates_geometry(mb_server, tmp_path):
    pattern = small_plate(tmp_path / "plate", aspect=2.0)
    req = request(mb_server.address, pattern, tmp_path / "cache", [hero((1003, 30.0, 40.0))], fmt=(100, 70, 2.0))
    outcome = jobs.BackgroundJob(req, jobs.Host(), "preview", 1003).run()
    assert outcome.status == "done" and outcome.published == [("hero", 1003)], outcome
    path = open_cache(str(tmp_path / "cache")).published_path("hero", 1003)
    pixels, spec = read_exr(path)
    plate_pixels, plate_spec = read_exr(pattern % 1003)
    assert (spec.x, spec.y, spec.width, spec.height) == (plate_spec.x, plate_spec.y, 80, 60)
    assert (spec.full_x, spec.full_y, spec.full_width, spec.full_height) == (0, 0, 100, 70)
    assert spec.get_float_attribute("PixelAspectRatio") == 2.0 and spec.channelnames == ("A",)
    assert 0.0 <= pixels.min() and pixels.max() <= 1.0 and pixels.std() > 0
    sent = json.loads(spec.get_string_attribute("mattebridge/prompts"))
    assert sent["objects"][0]["frames"][0]["points"] == [{"x": 30.0, "y": 30.0, "positive": True}]  # 70 - 40


def test_track_forward_then_a_correction_remakes_only_what_it_affects(mb_server, plate, tmp_path):
    cache_root = tmp_path / "cache"
    req = request(mb_server.address, plate, cache_root, [hero((1002, 30.0, 40.0))])
    outcome = jobs.BackgroundJob(req, jobs.Host(), "forward").run()
    assert outcome.status == "done", outcome
    cache = open_cache(str(cache_root))
    assert cache.published_frames("hero") == [1002, 1003, 1004, 1005, 1006]  # nothing before the first prompt
    pixels, spec = read_exr(cache.published_path("hero", 1004))
    meta = json.loads(spec.get_string_attribute("mattebridge/prompts"))
    assert meta["objects"][0]["frames"] == [{"frame": 1002, "points": [{"x": 30.0, "y": 30.0, "positive": True}]}]
    assert (spec.x, spec.y, spec.width, spec.height, spec.full_width, spec.full_height) == (5, 3, 80, 60, 100, 70)
    before = {f: os.stat(cache.published_path("hero", f)).st_mtime_ns for f in range(1002, 1007)}

    again = jobs.BackgroundJob(req, jobs.Host(), "forward").run()
    assert again.status == "up to date" and again.published == []

    corrected = request(mb_server.address, plate, cache_root, [hero((1002, 30.0, 40.0), bg=[(1004, 60.0, 20.0)])])
    outcome = jobs.BackgroundJob(corrected, jobs.Host(), "forward").run()
    assert outcome.status == "done"
    assert sorted(outcome.published) == [("hero", 1004), ("hero", 1005), ("hero", 1006)]
    after = {f: os.stat(cache.published_path("hero", f)).st_mtime_ns for f in range(1002, 1007)}
    assert [f for f in before if before[f] != after[f]] == [1004, 1005, 1006]


def test_track_both_fills_the_frames_before_the_first_prompt(mb_server, plate, tmp_path):
    req = request(mb_server.address, plate, tmp_path / "cache", [hero((1003, 30.0, 40.0))])
    assert jobs.BackgroundJob(req, jobs.Host(), "forward").run().status == "done"
    outcome = jobs.BackgroundJob(req, jobs.Host(), "both").run()
    assert sorted(outcome.published) == [("hero", 1001), ("hero", 1002)]  # 1003.. were made going forward
    cache = open_cache(str(tmp_path / "cache"))
    assert cache.entry("hero", 1001)[0] == "both-back" and cache.entry("hero", 1005)[0] == "forward"


class CancellingHost(jobs.Host):
    """The user presses Cancel on the progress bar once tracking has begun."""

    def progress(self, title):
        host = self

        class Task(jobs._Progress):
            def setProgress(self, percent):  # noqa: N802
                host.seen = percent

            def isCancelled(self):  # noqa: N802
                return getattr(host, "seen", 0) > 0

        return Task()


def test_cancel_keeps_finished_mattes_and_says_so(mb_server, tmp_path):
    pattern = small_plate(tmp_path / "plate", last=1012)
    req = request(mb_server.address, pattern, tmp_path / "cache", [hero((1001, 30.0, 40.0))], last=1012)
    outcome = jobs.BackgroundJob(req, CancellingHost(), "forward").run()
    assert outcome.status == "cancelled", outcome
    cache = open_cache(str(tmp_path / "cache"))
    done = cache.published_frames("hero")
    assert 1 <= len(done) < 12 and done == list(range(1001, 1001 + len(done)))
    for f in done:
        assert read_exr(cache.published_path("hero", f))[0].shape == (60, 80, 1)
    assert not [n for n in os.listdir(tmp_path / "cache" / "hero") if n.endswith(".tmp")]


def test_the_rendered_input_is_made_in_chunks_and_removed(mb_server, plate, tmp_path):
    from conftest import write_exr

    calls = []

    def render(pattern, first, last):  # what nukehost.render_input does inside Nuke: write the input's frames
        calls.append((pattern, first, last))
        for f in range(first, last + 1):
            pixels, spec = read_exr(plate % f)
            write_exr(
                pattern % f,
                {c: pixels[..., i] for i, c in enumerate("RGB")},
                display=(0, 0, 100, 70),
                data=(spec.x, spec.y, spec.width, spec.height),
                pixel_type="float",
            )

    frames = range(1001, 1007)
    source = jobs.Source(
        "the input (rendered)", sources.rendered_stamps("recipe", [plate], frames), None, render=render
    )
    req = request(mb_server.address, None, tmp_path / "cache", [hero((1001, 30.0, 40.0))], source=source)
    jobs.RENDER_CHUNK, chunk = 4, jobs.RENDER_CHUNK
    try:
        outcome = jobs.BackgroundJob(req, jobs.Host(), "forward").run()
    finally:
        jobs.RENDER_CHUNK = chunk
    assert outcome.status == "done", outcome
    assert [(a, b) for _, a, b in calls] == [(1001, 1004), (1005, 1006)]
    assert not os.path.exists(os.path.dirname(calls[0][0]))  # temporary frames gone


def test_a_read_outside_the_servers_folders_is_rendered_instead(mb_server, tmp_path):
    outside = tempfile.mkdtemp(dir="/var/tmp" if os.access("/var/tmp", os.W_OK) else os.path.expanduser("~"))
    try:
        pattern = small_plate(outside)
        rendered = []

        def render(dest, first, last):
            rendered.append((first, last))
            for f in range(first, last + 1):
                shutil.copyfile(pattern % f, dest % f)

        frames = range(1001, 1007)
        fallback = jobs.Source("rendered", {f: "r" for f in frames}, None, render=render)
        source = jobs.Source("Read1's files", sources.direct_stamps(pattern, frames, None), pattern, fallback=fallback)
        req = request(mb_server.address, pattern, tmp_path / "cache", [hero((1001, 30.0, 40.0))], source=source)
        outcome = jobs.BackgroundJob(req, jobs.Host(), "preview", 1001).run()
        assert outcome.status == "done" and rendered == [(1001, 1001)], outcome
    finally:
        shutil.rmtree(outside)


@pytest.mark.parametrize(
    "change, action, message",
    [
        ({"objects": []}, "forward", "no prompts yet"),
        (
            {"objects": [hero((995, 30.0, 40.0))]},
            "forward",
            "hero: a prompt on frame 995 is outside the frame range 1001-1006",
        ),
        ({"objects": [hero((1001, 130.0, 40.0))]}, "forward", "foreground point 130,40 is off the image"),
        (
            {"expected_model": "sam2.1_hiera_large"},
            "forward",
            "runs random_tiny.pt, the node asks for sam2.1_hiera_large",
        ),
        (
            {"fmt": (200, 70, 1.0)},
            "preview",
            "the node's input is 200x70 (pixel aspect 1) but the frames from the plate are 100x70",
        ),
        ({"input_bbox": (0, 0, 50, 35)}, "preview", "bbox 0,0 - 50,35 but the frames from the plate have 5,7 - 85,67"),
        ({"objects": [hero((1002, 30.0, 40.0))]}, "preview", "no prompts on frame 1001"),
        ({"first": 1002}, "preview", "frame 1001 is outside the node's frame range 1002-1006"),
    ],
)
def test_expected_failures_are_one_line(mb_server, plate, tmp_path, change, action, message):
    kw = {"objects": [hero((1001, 30.0, 40.0))]}
    kw.update(change)
    objects = kw.pop("objects")
    if kw.get("first") == 1002:  # the prompt on the first frame of the range, the preview before it
        objects = [hero((1002, 30.0, 40.0))]
    req = request(mb_server.address, plate, tmp_path / "cache", objects, **kw)
    outcome = jobs.BackgroundJob(req, jobs.Host(), action, 1001 if action == "preview" else None).run()
    assert outcome.status == "failed" and message in outcome.message, outcome
    assert "\n" not in outcome.message and "Traceback" not in outcome.message


def test_no_server_is_a_failure_with_a_hint(plate, tmp_path):
    req = request(
        "tcp://127.0.0.1:%d" % free_port(), plate, tmp_path / "cache", [hero((1001, 30.0, 40.0))], timeout=0.3
    )
    outcome = jobs.BackgroundJob(req, jobs.Host(), "forward").run()
    assert outcome.status == "failed" and "is `mattebridge serve` running?" in outcome.message


def test_real_footage_preview_and_track(mb_server, bedroom_plate, tmp_path):
    """The bedroom plate (960x540 ACEScg EXRs): mattes in its geometry, soft edges in 0..1."""
    pattern = bedroom_plate.replace("####", "%04d")
    req = request(
        mb_server.address,
        pattern,
        tmp_path / "cache",
        [hero((1002, 480.0, 300.0), box={1002.0: (300.0, 100.0, 700.0, 500.0)})],
        first=1001,
        last=1004,
        fmt=(960, 540, 1.0),
        source=jobs.Source("bedroom", sources.direct_stamps(pattern, range(1001, 1005), "ACEScg"), pattern, "ACEScg"),
    )
    assert jobs.BackgroundJob(req, jobs.Host(), "preview", 1002).run().status == "done"
    outcome = jobs.BackgroundJob(req, jobs.Host(), "both").run()
    assert outcome.status == "done" and len(outcome.published) == 4, outcome
    cache = open_cache(str(tmp_path / "cache"))
    for f in range(1001, 1005):
        pixels, spec = read_exr(cache.published_path("hero", f))
        assert (spec.full_width, spec.full_height, spec.width, spec.height) == (960, 540, 960, 540)
        assert np.isfinite(pixels).all() and 0 <= pixels.min() and pixels.max() <= 1
    assert cache.entry("hero", 1002)[0] == "forward"  # the track replaced the preview
