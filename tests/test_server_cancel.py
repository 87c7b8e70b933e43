"""A cancel that reaches the server before the propagation has started, and refused propagations: real
`mattebridge serve` processes on loopback ports, driven by the real client."""

from __future__ import annotations

import os
import re

import pytest
from conftest import read_exr

from mattebridge.core.wire.client import Client, ServerError
from mattebridge.core.wire.protocol import Message

FRAMES = "1001-1008"
PROMPTS = {"version": 1, "objects": [{"name": "hero", "frames": [{"frame": 1001, "points": [{"x": 300, "y": 300}]}]}]}


def assert_cancelled_before_the_end(run, out):
    """The stream ends `cancelled`, short of the clip's 8 frames, leaving only whole files."""
    results = list(run)
    assert run.summary["cancelled"] and run.summary["reason"] == "cancelled by the client", run.summary
    assert run.summary["frames_written"] < 8 and len(results) < 8, run.summary
    names = sorted(os.listdir(out)) if os.path.isdir(out) else []
    assert len(names) < 8, names  # a frame being written as the cancel came may still land
    for name in names:  # no temp file left behind, none half-written
        assert re.fullmatch(r"m\.\d{4}\.exr", name), name
        read_exr(os.path.join(out, name))


def test_a_cancel_sent_right_after_the_propagate_cancels_it(mb_server, bedroom_plate, tmp_path):
    with Client(mb_server.address, timeout=60) as client:
        clip = client.open_clip(bedroom_plate, FRAMES, colorspace="ACEScg")
        out = str(tmp_path / "now")
        run = clip.propagate(direction="forward", out=out + "/m.####.exr", edge="raw", prompts=PROMPTS, force=True)
        # Before the worker answered propagate_started: the front knows the job only as a waiting request.
        assert client.request("cancel", {"job": run.job}).content == {"cancelled": 1}
        assert_cancelled_before_the_end(run, out)
        clip.close()


def test_a_cancel_of_a_propagate_queued_behind_a_click_cancels_it(mb_server, bedroom_plate, tmp_path):
    with Client(mb_server.address, timeout=60) as client:
        clip = client.open_clip(bedroom_plate, FRAMES, colorspace="ACEScg")
        # The worker is busy with this preview (a soft edge at 960x540) while the propagate waits behind it, so
        # the cancel reaches the worker with the propagate still in its queue.
        click = Message("prompt", {"clip": clip.id, "frame": 1002, "object": "x", "points": [[10, 10, True]]})
        client._send(click)
        out = str(tmp_path / "queued")
        run = clip.propagate(direction="forward", out=out + "/m.####.exr", edge="raw", prompts=PROMPTS, force=True)
        assert client.request("cancel", {"job": run.job}).content == {"cancelled": 1}
        assert client._next(click.msg_id, 60).msg_type == "prompt_reply"  # answered first, as usual
        client._done(click.msg_id)
        assert_cancelled_before_the_end(run, out)
        # Cancelling every job of the client (no job id) reaches a queued propagate too.
        client._send(Message("prompt", {"clip": clip.id, "frame": 1003, "object": "x", "points": [[10, 10, True]]}))
        out = str(tmp_path / "all")
        run = clip.propagate(direction="forward", out=out + "/m.####.exr", edge="raw", prompts=PROMPTS, force=True)
        assert client.request("cancel", {}).content == {"cancelled": 1}
        assert_cancelled_before_the_end(run, out)
        clip.close()


def test_a_refused_propagate_leaves_the_clips_prompts_as_they_were(mb_server, bedroom_plate, tmp_path):
    other = {"version": 1, "objects": [{"name": "typo", "frames": [{"frame": 1002, "points": [{"x": 1, "y": 1}]}]}]}
    out = str(tmp_path / "m" / "m.####.exr")
    with Client(mb_server.address, timeout=60) as client:
        clip = client.open_clip(bedroom_plate, "1001-1002", colorspace="ACEScg")
        clip.prompt(1001, "hero", points=[(300, 300, True)], edge="raw")
        before = clip.prompts()
        assert [o["name"] for o in before["objects"]] == ["hero"]
        refused = [
            ({"layout": "layer"}, "layout"),
            ({"out": bedroom_plate}, "plate frame"),  # the plate itself
            ({"edge": "matte", "matte_tile": 100}, "matte_tile"),
            ({"channels": "RGBA", "layout": "layers"}, "channels RGBA"),
            ({"edge": "blurry"}, "edge"),
        ]
        for options, words in refused:
            with pytest.raises(ServerError, match=words) as e:
                list(clip.propagate(**dict({"out": out, "prompts": other}, **options)))
            assert e.value.code == "bad_field" and "\n" not in str(e.value)
            assert clip.prompts() == before, options
        # An accepted propagate still makes its prompts the clip's.
        run = clip.propagate(direction="forward", out=out, edge="raw", prompts=other)
        list(run)
        assert not run.summary["cancelled"]
        assert [o["name"] for o in clip.prompts()["objects"]] == ["typo"]
        clip.close()
