"""The server's prompt checks: a refused prompt leaves the clip's prompts as they were, the prompt refuses what
propagate would refuse (one rule, core/wire/prompts.check_frame_prompt), nothing non-finite goes on the wire, and
a request id already waiting or running is refused. Real server processes on loopback, driven by raw sockets."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from conftest import raw_socket, write_exr

from mattebridge.core.wire.protocol import TAG, Message, ProtocolError, decode, encode


def send(sock, msg_type, content=None, buffers=(), msg_id=None):
    msg = Message(msg_type, content or {}, list(buffers))
    if msg_id:
        msg.msg_id = msg_id
    sock.send_multipart(encode(msg))
    return msg.msg_id


def request(sock, msg_type, content=None, buffers=(), msg_id=None):
    send(sock, msg_type, content, buffers, msg_id)
    return decode(sock.recv_multipart())  # strict: a NaN in the reply fails here, as in the library client


def one_line_error(reply, code):
    assert reply.msg_type == "error", reply.content
    assert reply.content["code"] == code, reply.content
    assert reply.content["message"] and "\n" not in reply.content["message"]
    return reply.content["message"]


def inline_clip(sock, first=1, last=2, size=64):
    reply = request(sock, "open_clip", {"source": "inline", "frames": f"{first}-{last}", "colorspace": "ACEScg"})
    clip = reply.content["clip"]
    for f in range(first, last + 1):
        px = np.random.default_rng(f).random((size, size, 3), np.float32)
        desc = {"buffer": 0, "dtype": "float32", "shape": list(px.shape)}
        reply = request(sock, "put_frame", {"clip": clip, "frame": f, "pixels": desc}, [px])
        assert reply.msg_type == "put_frame_reply", reply.content
    return clip


def objects(sock, clip):
    return request(sock, "prompts", {"clip": clip}).content["prompts"]["objects"]


@pytest.fixture
def sock(mb_server):
    s = raw_socket(mb_server.address, 60000)
    yield s
    s.close()


def test_a_prompt_whose_preview_fails_leaves_the_clips_prompts_as_they_were(sock, tmp_path):
    for f in (1, 2, 3):
        rgb = np.random.default_rng(f).random((64, 64, 3)).astype(np.float32)
        write_exr(tmp_path / f"p.{f:04d}.exr", {"R": rgb[..., 0], "G": rgb[..., 1], "B": rgb[..., 2]})
    reply = request(
        sock, "open_clip", {"pattern": str(tmp_path / "p.####.exr"), "frames": "1-3", "colorspace": "ACEScg"}
    )
    clip = reply.content["clip"]
    point = {"clip": clip, "frame": 1, "object": "a", "points": [[10, 10, True]], "edge": "raw"}
    assert request(sock, "prompt", point).msg_type == "prompt_reply"
    before = objects(sock, clip)

    # the same object and frame, a prompt the preview refuses (an empty mask): the points stay
    empty = np.zeros((64, 64), np.float32)
    mask = {"clip": clip, "frame": 1, "object": "a", "mask": {"buffer": 0, "dtype": "float32", "shape": [64, 64]}}
    one_line_error(request(sock, "prompt", mask, [empty]), "bad_file")
    assert objects(sock, clip) == before

    # a frame missing from disk: neither the object's new frame nor a new object is kept
    (tmp_path / "p.0002.exr").rename(tmp_path / "p.0002.bak")
    for obj in ("a", "b"):
        message = one_line_error(
            request(sock, "prompt", {"clip": clip, "frame": 2, "object": obj, "points": [[10, 10, True]]}),
            "not_found",
        )
        assert "p.0002.exr" in message
        assert objects(sock, clip) == before
    (tmp_path / "p.0002.bak").rename(tmp_path / "p.0002.exr")

    # so the next propagate tracks only what was accepted
    reply = request(sock, "propagate", {"clip": clip, "buffers": True, "direction": "forward"})
    assert reply.msg_type == "propagate_started", reply.content
    assert reply.content["prompts"]["objects"] == before
    while reply.msg_type != "propagate_done":
        reply = decode(sock.recv_multipart())
        assert reply.msg_type in ("frame", "propagate_done"), reply.content
    assert reply.content["status"] == "done"


def test_the_prompt_refuses_the_boxes_propagate_refuses_and_nothing_non_finite_is_sent(sock):
    clip = inline_clip(sock)
    for box in ([5000, 5000, 6000, 6000], [0, 0, 1e308, 1e308], [0, 0, 3.5e38, 3.5e38], [-1e30, -1e30, 10, 10]):
        message = one_line_error(
            request(sock, "prompt", {"clip": clip, "frame": 1, "object": "a", "box": box}), "bad_field"
        )
        assert "box" in message
        assert objects(sock, clip) == []
        doc = {"version": 1, "objects": [{"name": "a", "frames": [{"frame": 1, "box": box}]}]}
        reply = request(sock, "propagate", {"clip": clip, "buffers": True, "prompts": doc})
        assert "box" in one_line_error(reply, "bad_field")

    # an integer too large for a float is refused too, not an internal error
    raw = b'{"clip": "%s", "frame": 1, "object": "a", "box": [0, 0, 1%s, 10]}' % (clip.encode(), b"0" * 400)
    header = json.dumps({"msg_id": "huge", "msg_type": "prompt", "version": 1, "session": ""}).encode()
    sock.send_multipart([TAG, header, raw])
    one_line_error(decode(sock.recv_multipart()), "bad_field")

    # a box partly outside the image is a prompt like any other; its reply and frames decode strictly
    reply = request(sock, "prompt", {"clip": clip, "frame": 1, "object": "a", "box": [-20, -20, 40, 40]})
    assert reply.msg_type == "prompt_reply", reply.content
    assert all(reply.content[k] is None or np.isfinite(reply.content[k]) for k in ("score", "iou"))
    reply = request(sock, "propagate", {"clip": clip, "buffers": True})
    assert reply.msg_type == "propagate_started", reply.content
    while reply.msg_type != "propagate_done":
        reply = decode(sock.recv_multipart())
        assert reply.msg_type in ("frame", "propagate_done"), reply.content


def test_encode_writes_strict_json_and_refuses_non_finite_numbers_in_one_line():
    frames = encode(Message("prompt_reply", {"score": None, "iou": 0.5}))
    assert decode(frames).content == {"score": None, "iou": 0.5}
    for value in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ProtocolError) as caught:
            encode(Message("frame", {"scores": {"a": value}}))
        assert caught.value.code == "internal" and "\n" not in str(caught.value)


def test_a_request_id_already_waiting_or_running_is_refused(sock):
    first, second = inline_clip(sock, 1, 30), inline_clip(sock, 1, 3)
    for clip in (first, second):
        reply = request(sock, "prompt", {"clip": clip, "frame": 1, "object": "a", "points": [[10, 10, True]]})
        assert reply.msg_type == "prompt_reply", reply.content
    job = "one-id-twice"
    send(sock, "propagate", {"clip": first, "buffers": True, "direction": "forward"}, msg_id=job)
    send(sock, "propagate", {"clip": second, "buffers": True, "direction": "forward"}, msg_id=job)
    refused, started = [], []
    while not refused:
        reply = decode(sock.recv_multipart())
        if reply.msg_type == "error":
            refused.append(reply)
        elif reply.msg_type == "propagate_started":
            started.append(reply.content["clip"])
    assert refused[0].parent_id == job
    assert "msg_id" in one_line_error(refused[0], "bad_field")
    # the first job is still the one id's only job: cancelling it stops it, and the second clip never started
    send(sock, "cancel", {"job": job})
    done = None
    deadline = time.monotonic() + 120
    while done is None and time.monotonic() < deadline:
        reply = decode(sock.recv_multipart())
        if reply.msg_type == "propagate_started":
            started.append(reply.content["clip"])
        elif reply.msg_type == "propagate_done":
            done = reply.content
        elif reply.msg_type == "cancel_reply":
            assert reply.content["cancelled"] == 1
        else:
            assert reply.msg_type == "frame", reply.content
    assert started == [first]
    assert done["clip"] == first and done["status"] == "cancelled"
    assert request(sock, "status").content["jobs"] == []
    # the id is free again once its job ended
    reply = request(sock, "propagate", {"clip": second, "buffers": True, "direction": "forward"}, msg_id=job)
    assert reply.msg_type == "propagate_started" and reply.content["clip"] == second
    while reply.msg_type != "propagate_done":
        reply = decode(sock.recv_multipart())
    assert reply.content["status"] == "done"
