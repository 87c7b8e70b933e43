"""`mattebridge serve` as real processes on loopback ports, driven by the real client and raw sockets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from conftest import ServerProcess, model_args, raw_socket, read_exr, run_cli, wait_for, write_exr

from mattebridge.core.wire.client import Client, ServerError, ServerUnreachable
from mattebridge.core.wire.protocol import ERRORS, REQUESTS, TAG, Message, decode, encode


def ask(sock, frames):
    """Send raw frames; the next reply as a Message."""
    sock.send_multipart(frames)
    return decode(sock.recv_multipart())


def request(sock, msg_type, content=None, buffers=()):
    return ask(sock, encode(Message(msg_type, content or {}, list(buffers))))


def exr_listing(folder):
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


# --- every message type -----------------------------------------------------------------------------
def test_every_message_type_round_trips(mb_server, bedroom_plate, tmp_path):
    with Client(mb_server.address, timeout=30) as client:
        info = client.hello()
        assert info["protocol"] == 1 and info["model"] == "random_tiny.pt" and info["device"] == "cpu"
        assert {"path", "shm", "inline"} <= set(info["capabilities"])

        clip = client.open_clip(bedroom_plate, "1001-1006", colorspace="ACEScg")
        assert (clip.first, clip.last) == (1001, 1006)
        assert clip.geometry(1003) == {"display": [0, 0, 960, 540], "data": [0, 0, 960, 540], "pixel_aspect": 1.0}
        assert clip.colorspace == "ACEScg" and clip.view

        matte = clip.prompt(1002, "hero", points=[(300, 300, True), (50, 50, False)])
        hero = matte.alpha["hero"]
        assert hero.shape == (540, 960) and hero.dtype == np.float32 and 0 <= hero.min() and hero.max() <= 1
        assert matte.frame == 1002 and isinstance(matte.scores["hero"], float) and 0 <= matte.ious["hero"] <= 1.5
        again = clip.prompt(1002, "hero", points=[(300, 300, True), (50, 50, False)])
        np.testing.assert_array_equal(again.alpha["hero"], hero)  # a repeated click gives the same matte

        box = clip.prompt(1002, "prop", box=(550, 120, 800, 540), edge="hard")
        assert set(np.unique(box.alpha["prop"])) <= {0.0, 1.0}
        disc = np.zeros((540, 960), np.uint8)
        disc[200:400, 300:600] = 255
        masked = clip.prompt(1004, "cushion", mask=disc, edge="raw")
        assert masked.alpha["cushion"][300, 450] > masked.alpha["cushion"][20, 20]
        write_exr(tmp_path / "mask.exr", {"A": disc.astype(np.float32) / 255})
        by_path = clip.prompt(1004, "cushion", mask=tmp_path / "mask.exr", edge="raw")
        np.testing.assert_allclose(by_path.alpha["cushion"], masked.alpha["cushion"], atol=1e-3)

        prompts = clip.prompts()
        assert [o["name"] for o in prompts["objects"]] == ["hero", "prop", "cushion"]
        prompts = clip.clear(1004, "cushion")
        assert [o["name"] for o in prompts["objects"]] == ["hero", "prop"]

        run = clip.propagate(
            direction="both", out=str(tmp_path / "m" / "{object}.####.exr"), buffers=True, channels="RGBA"
        )
        results = list(run)
        assert sorted(r.frame for r in results) == list(range(1001, 1007))
        assert run.summary["frames_written"] == 6 and not run.summary["cancelled"], run.summary
        for r in results:
            assert set(r.alpha) == {"hero", "prop"} and r.total == 6
            pixels, spec = read_exr(r.paths["hero"])
            assert spec.channelnames == ("R", "G", "B", "A")
            np.testing.assert_array_equal(pixels[..., 3], r.alpha["hero"])  # buffers == files

        # cancel: a propagation stopped mid-way ends as cancelled and leaves only complete files
        run = clip.propagate(direction="forward", out=str(tmp_path / "c" / "{object}.####.exr"), force=True)
        next(iter(run))
        run.cancel()
        rest = list(run)
        assert run.summary["cancelled"] and 1 + len(rest) < 6
        for name in exr_listing(tmp_path / "c"):
            assert not name.startswith(".")
            read_exr(tmp_path / "c" / name)

        # inline pixels: by shared memory (same host) and inline buffers give the same matte
        plate, _ = read_exr(bedroom_plate.replace("####", "1002"))
        mattes = {}
        for transport in ("shm", "inline"):
            inline = client.open_inline_clip("1-2", colorspace="ACEScg")
            inline.put_frame(1, plate.astype(np.float16), transport=transport)
            mattes[transport] = inline.prompt(1, "hero", points=[(300, 300, True), (50, 50, False)]).alpha["hero"]
            inline.close()
        np.testing.assert_array_equal(mattes["shm"], mattes["inline"])
        np.testing.assert_allclose(mattes["shm"], hero, atol=2e-3)  # same pixels as the file clip's frame

        status = client.status()
        assert status["clients"] >= 1 and status["jobs"] == [] and "rss_mb" in status["memory"]
        clip.close()
        with pytest.raises(ServerError) as e:
            clip.prompt(1002, "hero", points=[(1, 1, True)])
        assert e.value.code == "unknown_clip"


def test_mattes_through_the_server_equal_track_in_process(mb_server, checkpoint, bedroom_plate, tmp_path):
    from mattebridge.core.wire.prompts import Prompts

    prompts = Prompts()
    prompts.add_point("hero", 1003, 300, 300)
    prompts.add_point("hero", 1006, 80, 60, positive=False)
    prompts.set_box("prop", 1004, (550, 120, 800, 540))
    (tmp_path / "p.json").write_text(prompts.dumps())
    common = [
        "--frames",
        "1001-1008",
        "--prompts",
        tmp_path / "p.json",
        "--colorspace",
        "ACEScg",
        "--layout",
        "layers",
        "--report",
        None,
    ]
    outs = {}
    for name, extra in (("local", model_args(checkpoint)), ("server", ["--server", mb_server.address])):
        args = [a if a is not None else tmp_path / name / "qc.json" for a in common]
        code, _, err = run_cli("track", bedroom_plate, *args, "--out", tmp_path / name / "m.####.exr", *extra)
        assert code == 0, err
        outs[name] = tmp_path / name
    assert exr_listing(outs["local"]) == exr_listing(outs["server"])
    for name in exr_listing(outs["local"]):
        if name.endswith(".exr"):
            a, spec = read_exr(outs["local"] / name)
            b, _ = read_exr(outs["server"] / name)
            np.testing.assert_array_equal(a, b, err_msg=name)
            assert {"hero.A", "prop.A"} <= set(spec.channelnames)
    assert (outs["local"] / "qc.csv").read_text() == (outs["server"] / "qc.csv").read_text()

    # the preview of a clicked frame is what `track` writes there
    with Client(mb_server.address) as client:
        clip = client.open_clip(bedroom_plate, "1001-1008", colorspace="ACEScg")
        preview = clip.prompt(1003, "hero", points=[(300, 300, True)]).alpha["hero"]
    tracked, _ = read_exr(outs["local"] / "m.1003.exr")
    np.testing.assert_allclose(preview, tracked[..., list(_.channelnames).index("hero.A")], atol=1e-3)


# --- bad input ----------------------------------------------------------------------------------------
def test_bad_input_gets_an_error_reply_each_and_the_server_stays_up(mb_server, bedroom_plate, tmp_path):
    sock = raw_socket(mb_server.address)
    ids = iter(range(10**6))

    def header(t, **kw):
        return json.dumps({"msg_id": f"m{next(ids)}", "msg_type": t, "version": 1, "session": "", **kw}).encode()

    cases = {
        "garbage bytes": ([b"\x00\xff garbage"], "bad_message"),
        "wrong frame count": ([TAG, header("hello")], "bad_message"),
        "wrong tag": ([b"jupyter", header("hello"), b"{}"], "bad_message"),
        "header not JSON": ([TAG, b"{nope", b"{}"], "bad_message"),
        "content not an object": ([TAG, header("status"), b"[1, 2]"], "bad_message"),
        "unknown type": ([TAG, header("format_disk"), b"{}"], "unknown_type"),
        "future version": ([TAG, header("hello", version=99), b"{}"], "unsupported_version"),
        "unknown clip": (
            [
                TAG,
                header("prompt"),
                json.dumps({"clip": "999", "frame": 1, "object": "a", "points": [[1, 1, True]]}).encode(),
            ],
            "unknown_clip",
        ),
        "path outside roots": (
            [TAG, header("open_clip"), json.dumps({"pattern": "/etc/plate.####.exr", "frames": "1-2"}).encode()],
            "forbidden_path",
        ),
        "missing field": ([TAG, header("open_clip"), json.dumps({"pattern": bedroom_plate}).encode()], "bad_field"),
        "bad frame range": (
            [TAG, header("open_clip"), json.dumps({"pattern": bedroom_plate, "frames": "9-1"}).encode()],
            "bad_field",
        ),
        "missing frames": (
            [TAG, header("open_clip"), json.dumps({"pattern": bedroom_plate, "frames": "1-3"}).encode()],
            "not_found",
        ),
    }
    corrupt = tmp_path / "corrupt.0001.exr"
    corrupt.write_bytes(b"v/1\x01" + os.urandom(2000))
    cases["corrupt EXR"] = (
        [
            TAG,
            header("open_clip"),
            json.dumps({"pattern": str(tmp_path / "corrupt.####.exr"), "frames": "1-1"}).encode(),
        ],
        "bad_file",
    )
    for name, (frames, code) in cases.items():
        reply = ask(sock, frames)
        assert reply.msg_type == "error" and reply.content["code"] == code, (name, reply.content)
        assert reply.content["code"] in ERRORS and reply.content["message"] and "\n" not in reply.content["message"]

    # buffers: an inline clip, then truncated, oversized, wrong dtype, wrong shape, missing buffers
    opened = request(sock, "open_clip", {"source": "inline", "frames": "1-2", "colorspace": "ACEScg"})
    clip = opened.content["clip"]
    good = np.zeros((8, 8, 3), np.float16)
    desc = {"buffer": 0, "dtype": "float16", "shape": [8, 8, 3]}
    bad = {
        "truncated": (desc, [good.tobytes()[:-2]]),
        "oversized": (desc, [good.tobytes() + b"\0" * 64]),
        "wrong dtype": (dict(desc, dtype="complex64"), [good.tobytes()]),
        "wrong shape": (dict(desc, shape=[8, 8, 7]), [good.tobytes()]),
        "negative shape": (dict(desc, shape=[-8, 8, 3]), [good.tobytes()]),
        "no buffer": (desc, []),
        "not a description": ("pixels", [good.tobytes()]),
    }
    for name, (d, buffers) in bad.items():
        reply = request(sock, "put_frame", {"clip": clip, "frame": 1, "pixels": d}, buffers)
        assert reply.msg_type == "error" and reply.content["code"] in ("bad_buffer", "bad_field"), (name, reply.content)
    reply = request(
        sock,
        "put_frame",
        {"clip": clip, "frame": 1, "pixels": desc, "geometry": {"data": [0, 0, 9, 8]}},
        [good.tobytes()],
    )
    assert reply.content["code"] == "bad_buffer"  # pixels and data window disagree
    assert (
        request(sock, "put_frame", {"clip": clip, "frame": 1, "pixels": desc}, [good.tobytes()]).msg_type
        == "put_frame_reply"
    )
    reply = request(
        sock,
        "propagate",
        {
            "clip": clip,
            "out": str(tmp_path / "x.####.exr"),
            "prompts": {
                "version": 1,
                "objects": [{"name": "a", "frames": [{"frame": 1, "points": [{"x": 1, "y": 1}]}]}],
            },
        },
    )
    assert reply.content["code"] == "not_found" and "frame" in reply.content["message"]  # frame 2 never sent
    assert request(sock, "hello").msg_type == "hello_reply"  # still up
    sock.close()


def test_fuzz_thousands_of_messages(mb_server):
    """Property: any message gets exactly one reply, an error for anything malformed; the server stays up."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    sock = raw_socket(mb_server.address, timeout_ms=20000)
    json_values = st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=8),  # encode is strict JSON
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
        max_leaves=12,
    )
    types = st.sampled_from([t for t in REQUESTS if t not in ("hello", "heartbeat", "goodbye")] + ["nonsense", ""])
    fields = st.fixed_dictionaries(
        {},
        optional={
            "clip": st.text(max_size=3) | st.integers(),
            "frame": st.integers() | st.text(max_size=3),
            "frames": st.text(max_size=8),
            "pattern": st.text(max_size=20),
            "source": st.sampled_from(["files", "inline", "x"]),
            "object": st.text(max_size=6),
            "points": json_values,
            "box": json_values,
            "mask": json_values,
            "pixels": json_values,
            "shm": json_values,
            "geometry": json_values,
            "out": st.text(max_size=12),
            "prompts": json_values,
            "direction": st.text(max_size=8),
            "job": json_values,
        },
    )
    structured = st.tuples(types, fields, st.lists(st.binary(max_size=64), max_size=3)).map(
        lambda t: encode(Message(t[0], t[1], list(t[2])))
    )
    raw = st.lists(st.binary(max_size=40), min_size=1, max_size=5)
    tagged = st.tuples(st.binary(max_size=30), st.binary(max_size=30)).map(lambda t: [TAG, t[0], t[1]])
    counts = {"error": 0, "other": 0}

    @settings(max_examples=2500, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(st.one_of(structured, raw, tagged))
    def one(frames):
        sock.send_multipart(frames)
        reply = decode(sock.recv_multipart())  # a reply within 20 s, always
        counts["error" if reply.msg_type == "error" else "other"] += 1
        if reply.msg_type == "error":
            assert reply.content["code"] in ERRORS and "\n" not in reply.content["message"]

    one()
    assert counts["error"] > 2000
    assert request(sock, "hello").msg_type == "hello_reply"
    sock.close()


# --- faults -------------------------------------------------------------------------------------------
KILLED_CLIENT = r"""
import sys
from mattebridge.core.wire.client import Client
c = Client(sys.argv[1])
clip = c.open_clip(sys.argv[2], "1001-1020", colorspace="ACEScg")
run = clip.propagate(direction="forward", buffers=True, prompts={"version": 1, "objects": [{"name": "hero",
    "frames": [{"frame": 1001, "points": [{"x": 300, "y": 300}]}]}]})
for r in run:
    print(r.frame, flush=True)
"""


def test_client_killed_mid_propagation_frees_its_job_and_clips(checkpoint, bedroom_plate, tmp_path):
    server = ServerProcess(checkpoint, tmp_path, "--client-timeout", "2")
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", KILLED_CLIENT, server.address, bedroom_plate], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout.readline().strip() and proc.stdout.readline().strip()  # two frames arrived
        with Client(server.address) as watcher:
            status = watcher.status()
            assert len(status["jobs"]) == 1 and status["clips"] == 1
            proc.kill()
            proc.wait()
            status = wait_for(
                lambda: (lambda s: s if not s["jobs"] and s["clips"] == 0 else None)(watcher.status()),
                20,
                "the dead client's job and clip to be freed",
            )
            assert status["frames_done"] < 20  # cancelled, not run to the end
        wait_for(lambda: "the client stopped heartbeating" in server.log(), 10, "the worker's log of the cancel")
    finally:
        server.stop()


def test_server_killed_mid_propagation_then_a_restart_resumes(checkpoint, bedroom_plate, tmp_path):
    out = tmp_path / "m" / "hero.####.exr"
    track = [
        "track",
        bedroom_plate,
        "--frames",
        "1001-1012",
        "--point",
        "300,300@1001",
        "--colorspace",
        "ACEScg",
        "--direction",
        "forward",
        "--out",
        out,
        "--timeout",
        "2",
    ]
    server = ServerProcess(checkpoint, tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mattebridge.cli", *map(str, track), "--server", server.address],
        stderr=subprocess.PIPE,
        text=True,
    )

    def finished():
        return [n for n in exr_listing(tmp_path / "m") if not n.startswith(".")]  # not the temp files

    wait_for(lambda: len(finished()) >= 3, 60, "three frames on disk")
    server.process.kill()  # SIGKILL: no chance to clean up
    server.stop()
    killed = time.monotonic()
    err = proc.communicate(timeout=60)[1]
    assert time.monotonic() - killed < 15  # noticed within its timeout (2 s + the hello retries)
    lines = err.strip().splitlines()
    assert proc.returncode == 2 and lines[-1].startswith("mattebridge: error: ") and "no reply" in lines[-1], err
    assert "Traceback" not in err
    done_before = [n for n in exr_listing(tmp_path / "m") if not n.startswith(".")]
    assert 3 <= len(done_before) < 12
    for name in done_before:  # every finished file is complete
        assert read_exr(tmp_path / "m" / name)[0].shape == (540, 960, 1)

    server = ServerProcess(checkpoint, tmp_path)
    try:
        code, _, err = run_cli(*track, "--server", server.address)
        assert code == 0 and f"({len(done_before)} already done)" in err, err
        assert exr_listing(tmp_path / "m") == [f"hero.{f}.exr" for f in range(1001, 1013)]  # no temp file left
    finally:
        server.stop()
    code, _, err = run_cli(*track[:-2], "--out", tmp_path / "ref" / "hero.####.exr", *model_args(checkpoint))
    assert code == 0, err
    for f in range(1001, 1013):  # resumed == uninterrupted
        np.testing.assert_array_equal(
            read_exr(tmp_path / "m" / f"hero.{f}.exr")[0], read_exr(tmp_path / "ref" / f"hero.{f}.exr")[0]
        )


def test_sigterm_cancels_running_jobs_and_exits_cleanly(checkpoint, bedroom_plate, tmp_path):
    server = ServerProcess(checkpoint, tmp_path)
    with Client(server.address, timeout=5) as client:
        clip = client.open_clip(bedroom_plate, "1001-1020", colorspace="ACEScg")
        clip.prompt(1001, "hero", points=[(300, 300, True)])
        run = clip.propagate(direction="forward", out=str(tmp_path / "m" / "{object}.####.exr"))
        frames = iter(run)
        next(frames)
        assert server.stop(signal.SIGTERM) == 0
        list(frames)  # the stream ends: the server said why before it went
        assert run.summary["cancelled"] and "shutting down" in run.summary["reason"]
    assert "stopped" in server.log()
    names = exr_listing(tmp_path / "m")
    assert names and not [n for n in names if n.startswith(".")] and len(names) < 20


# --- load --------------------------------------------------------------------------------------------
def test_previews_are_answered_between_frames_of_other_clients_propagations(mb_server, bedroom_plate, tmp_path):
    events = []  # (time, what)
    errors = []

    def propagate():
        try:
            with Client(mb_server.address, timeout=60) as c:
                clip = c.open_clip(bedroom_plate, "1001-1020", colorspace="ACEScg")
                clip.prompt(1001, "hero", points=[(300, 300, True)])
                for r in clip.propagate(direction="forward", out=str(tmp_path / "p" / "{object}.####.exr")):
                    events.append((time.monotonic(), "frame"))
        except Exception as e:  # reported below
            errors.append(e)

    def preview(name):
        try:
            with Client(mb_server.address, timeout=60) as c:
                clip = c.open_clip(bedroom_plate, "1001-1020", colorspace="ACEScg")
                for i, frame in enumerate((1005, 1010, 1015)):
                    while not any(e[1] == "frame" for e in events):
                        time.sleep(0.05)
                    clip.prompt(frame, name, points=[(300 + 10 * i, 300, True)], edge="raw")
                    events.append((time.monotonic(), f"preview {name}"))
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=propagate)] + [threading.Thread(target=preview, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    frames = [t for t, what in events if what == "frame"]
    previews = [t for t, what in events if what.startswith("preview")]
    assert len(frames) == 20 and len(previews) == 6  # everyone completed
    assert sum(1 for t in previews if t < frames[-1]) >= 4  # answered while the propagation still ran


def test_a_full_queue_answers_busy_with_a_retry_hint(checkpoint, bedroom_plate, tmp_path):
    server = ServerProcess(checkpoint, tmp_path, "--max-queue", "2")
    try:
        sock = raw_socket(server.address, timeout_ms=60000)
        clip = request(
            sock, "open_clip", {"pattern": bedroom_plate, "frames": "1001-1003", "colorspace": "ACEScg"}
        ).content["clip"]
        for i in range(8):
            sock.send_multipart(
                encode(
                    Message(
                        "prompt", {"clip": clip, "frame": 1001 + i % 3, "object": "a", "points": [[100 + i, 100, True]]}
                    )
                )
            )
        replies = [decode(sock.recv_multipart()) for _ in range(8)]
        busy = [r for r in replies if r.msg_type == "error" and r.content["code"] == "busy"]
        assert busy and all(r.content["retry_after"] > 0 for r in busy)
        assert any(r.msg_type == "prompt_reply" for r in replies)
        sock.close()
    finally:
        server.stop()


# --- security -----------------------------------------------------------------------------------------
def test_non_loopback_bind_without_keys_is_refused(checkpoint):
    code, _, err = run_cli("serve", "--bind", "tcp://0.0.0.0:5599", *model_args(checkpoint), timeout=60)
    assert code == 2 and err.strip().startswith("mattebridge: error: --bind tcp://0.0.0.0:5599: not loopback")
    assert len(err.strip().splitlines()) == 1


def test_curve_keys_keep_out_clients_without_the_server_key(checkpoint, bedroom_plate, tmp_path):
    code, out, err = run_cli("keys", tmp_path / "keys")
    assert code == 0, err
    public = out.strip()
    assert os.path.exists(public) and os.path.exists(tmp_path / "keys" / "server.key_secret")
    code, _, err = run_cli("keys", tmp_path / "keys")
    assert code == 2 and "not overwritten" in err  # never clobbers a key pair
    server = ServerProcess(checkpoint, tmp_path, "--keys", tmp_path / "keys")
    try:
        with pytest.raises(ServerUnreachable):
            Client(server.address, timeout=1, retries=1)  # plain text: the CURVE handshake never completes
        other = tmp_path / "other"
        run_cli("keys", other)
        with pytest.raises(ServerUnreachable):
            Client(server.address, timeout=1, retries=1, server_key=str(other / "server.key"))  # wrong key
        with Client(server.address, timeout=10, server_key=public) as client:
            assert client.hello()["model"] == "random_tiny.pt"
    finally:
        server.stop()


def test_a_restarted_server_is_reported_as_such(checkpoint, tmp_path):
    from mattebridge.core.wire.client import ServerRestarted

    server = ServerProcess(checkpoint, tmp_path)
    client = Client(server.address, timeout=3, retries=1)
    try:
        server.stop()
        server = ServerProcess(checkpoint, tmp_path, port=server.port)  # same address, new process
        with pytest.raises(ServerRestarted, match="restarted"):
            client.status()
    finally:
        client.close()
        server.stop()


def test_the_client_is_numpy_and_pyzmq_only_and_python_3_9():
    import ast
    from pathlib import Path

    core = Path(__file__).resolve().parent.parent / "core"
    wire = sorted(p.relative_to(core).as_posix() for p in (core / "wire").glob("*.py"))
    for name in wire + ["errors.py", "paths.py", "__init__.py"]:  # what a host's Python loads
        ast.parse((core / name).read_text(), filename=name, feature_version=(3, 9))
    code = (
        "import sys, mattebridge.core.wire.client; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'sam2', 'OpenImageIO', "
        "'PyOpenColorIO', 'PySide6')); print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_clients_text_cannot_forge_a_log_line(mb_server):
    """The server logs each request's names and each refusal; a newline a client put in a name is written as an
    escape, so it cannot start a line of the log (or of the error reply)."""
    sock = raw_socket(mb_server.address, timeout_ms=20000)
    forged = "x.####.exr\n2026-01-01 00:00:00,000 INFO forged: server stopped by admin"
    reply = request(sock, "open_clip", {"source": "files", "pattern": forged, "frames": "1-2"})
    assert reply.msg_type == "error" and "\n" not in reply.content["message"]  # the reply's one line, escaped
    assert "x.0001.exr\\n2026-01-01" in reply.content["message"]
    sock.close()
    log = mb_server.log()
    assert "forged: server stopped by admin" in log  # logged, quoted on the request's own line
    assert not any(line.startswith("2026-01-01") for line in log.splitlines())
