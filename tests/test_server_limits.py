"""`mattebridge serve` under hostile or careless peers: idle crowds, greedy clients, oversized frames, exposed
keys, a server stopped mid-job. Real server processes on loopback ports, driven by the real client and raw sockets."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from multiprocessing import shared_memory

import numpy as np
import pytest
from conftest import ServerProcess, free_port, model_args, raw_socket, run_cli

from mattebridge.core.wire.client import Busy, Client, ServerError
from mattebridge.core.wire.protocol import Message, decode, encode


def request(sock, msg_type, content=None, buffers=()):
    sock.send_multipart(encode(Message(msg_type, content or {}, list(buffers))))
    return decode(sock.recv_multipart())


def prompts_doc(*names, frame=1):
    return {
        "version": 1,
        "objects": [{"name": n, "frames": [{"frame": frame, "points": [{"x": 8, "y": 8}]}]} for n in names],
    }


def one_line(content):
    return content["message"] and "\n" not in content["message"]


# --- 6: idle crowds and greedy clients ------------------------------------------------------------------------
def test_a_crowd_of_silent_clients_timing_out_never_makes_a_live_client_busy(checkpoint, bedroom_plate, tmp_path):
    """200 peers say hello and go silent; while the server times them out, a live client asking one thing
    at a time is never told `busy` (their clean-up used to queue 200 requests against --max-queue)."""
    server = ServerProcess(checkpoint, tmp_path, "--client-timeout", "3")
    crowd = []
    try:
        for _ in range(200):
            sock = raw_socket(server.address, 30000)
            assert request(sock, "hello").msg_type == "hello_reply"
            crowd.append(sock)  # kept open, never heard from again
        busy, rounds, after = 0, 0, 0
        with Client(server.address, timeout=60) as live:
            while after < 3:  # until the crowd is forgotten and its clean-up done, then 3 rounds more
                rounds += 1
                assert rounds < 500, "the silent clients were never timed out"
                status = live.status()
                try:
                    clip = live.open_clip(bedroom_plate, "1001-1002", colorspace="ACEScg")
                    matte = clip.prompt(1001, "hero", points=[(300, 300, True)], edge="raw")
                    assert matte.alpha["hero"].shape == (540, 960)
                    clip.close()
                except Busy:
                    busy += 1
                    time.sleep(0.2)
                if status["clients"] == 1 and status["queue"]["waiting"] == 0:
                    after += 1
        assert busy == 0, f"{busy} busy replies in {rounds} rounds"
        assert server.log().count("silent for") >= 200
    finally:
        for sock in crowd:
            sock.close()
        server.stop()


def test_clips_per_client_and_objects_are_bounded(checkpoint, tmp_path):
    server = ServerProcess(checkpoint, tmp_path, "--max-clips-per-client", "2", "--max-objects", "2")
    try:
        with Client(server.address, timeout=60) as greedy, Client(server.address, timeout=60) as other:
            limits = greedy.info["limits"]
            assert limits["max_clips_per_client"] == 2 and limits["max_objects"] == 2

            # clips: two per client; the third is `busy` until one is closed; other clients are not affected
            clips = [greedy.open_inline_clip("1-2", colorspace="ACEScg") for _ in range(2)]
            with pytest.raises(Busy) as e:
                greedy.open_inline_clip("1-2", colorspace="ACEScg")
            assert "clip limit" in str(e.value) and e.value.retry_after > 0 and "\n" not in str(e.value)
            other.open_inline_clip("1-2", colorspace="ACEScg").close()
            clips.pop().close()
            clip = greedy.open_inline_clip("1-2", colorspace="ACEScg")

            # objects: two per clip; a third is a bad field, a prompt of a known object still works
            pixels = np.random.default_rng(0).random((64, 96, 3), np.float32)
            clip.put_frame(1, pixels, transport="inline")
            clip.put_frame(2, pixels, transport="inline")
            for name in ("a", "b"):
                clip.prompt(1, name, points=[(10, 10, True)], edge="raw")
            with pytest.raises(ServerError) as e:
                clip.prompt(1, "c", points=[(10, 10, True)], edge="raw")
            assert e.value.code == "bad_field" and "object 'c'" in str(e.value) and "object limit" in str(e.value)
            clip.prompt(2, "a", points=[(20, 20, True)], edge="raw")

            # and a propagation's prompt set: three objects are refused, the clip's prompts stay as they were
            with pytest.raises(ServerError) as e:
                list(clip.propagate(buffers=True, prompts=prompts_doc("x", "y", "z")))
            assert e.value.code == "bad_field" and str(e.value).startswith("server: prompts: 3 objects")
            assert [o["name"] for o in clip.prompts()["objects"]] == ["a", "b"]
            run = clip.propagate(buffers=True, prompts=prompts_doc("x", "y"))
            assert len(list(run)) == 2 and not run.summary["cancelled"]
    finally:
        server.stop()


# --- 8: frame size, by every transport ---------------------------------------------------------------------------
def test_frames_over_the_pixel_limit_are_refused_by_every_transport(checkpoint, bedroom_plate, tmp_path):
    server = ServerProcess(checkpoint, tmp_path, "--max-frame-pixels", "100000")
    segment = shared_memory.SharedMemory(create=True, size=400 * 300 * 4 * 4)
    try:
        sock = raw_socket(server.address, 30000)
        assert request(sock, "hello").content["limits"]["max_frame_pixels"] == 100000
        clip = request(sock, "open_clip", {"source": "inline", "frames": "1-2", "colorspace": "ACEScg"}).content["clip"]

        def put(shape, dtype="float32", offset=0, geometry=None):
            desc = {"name": segment.name, "dtype": dtype, "shape": list(shape), "offset": offset}
            return request(sock, "put_frame", {"clip": clip, "frame": 1, "shm": desc, "geometry": geometry}).content

        big = np.zeros((300, 400, 3), np.float32)  # 120000 pixels
        reply = request(
            sock,
            "put_frame",
            {"clip": clip, "frame": 1, "pixels": {"buffer": 0, "dtype": "float32", "shape": [300, 400, 3]}},
            [big],
        )
        assert reply.content["code"] == "too_large"
        assert reply.content["message"].startswith("pixels: 400x300 is 120000 pixels") and one_line(reply.content)
        reply = put((300, 400, 4))
        assert reply["code"] == "too_large" and reply["message"].startswith("shm: 400x300") and one_line(reply)
        # a claim past the segment's real end: refused, whatever the description says
        reply = put((300, 300, 4), offset=400 * 300 * 4 * 4 - 16)
        assert reply["code"] == "bad_buffer" and f"segment {segment.name!r} has {segment.size}" in reply["message"]
        assert put((300, 300, 4), "uint8")["code"] == "bad_buffer"  # inline frames are float
        assert put((300, 300, 4), geometry={"data": [0, 0, 301, 300]})["code"] == "bad_buffer"
        # the display window too: the model's view of a frame is made at its size
        huge = {"display": [0, 0, 1 << 20, 1 << 20], "data": [0, 0, 300, 300]}
        reply = put((300, 300, 4), geometry=huge)
        assert reply["code"] == "too_large" and reply["message"].startswith("geometry.display: 1048576x1048576")
        small = np.zeros((30, 30, 3), np.float32)
        reply = request(
            sock,
            "put_frame",
            {
                "clip": clip,
                "frame": 1,
                "geometry": dict(huge, data=[0, 0, 30, 30]),
                "pixels": {"buffer": 0, "dtype": "float32", "shape": [30, 30, 3]},
            },
            [small],
        )
        assert reply.content["code"] == "too_large" and reply.content["message"].startswith("geometry.display")
        assert put((300, 300, 4))["frame"] == 1  # 90000 pixels: taken

        # files: the plate's data window (960x540) is checked when it is opened
        reply = request(sock, "open_clip", {"pattern": bedroom_plate, "frames": "1001-1002", "colorspace": "ACEScg"})
        assert reply.content["code"] == "too_large" and one_line(reply.content)
        assert reply.content["message"].startswith("pattern: frame 1001's data window: 960x540 is 518400 pixels")
        assert request(sock, "status").content["clips"] == 1  # the refused clip was not kept
        sock.close()
    finally:
        segment.close()
        segment.unlink()
        server.stop()


def _memory(pid):
    """(VmRSS, VmHWM) of a process, in bytes."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value
    return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024


def _reset_peak(pid):
    with open(f"/proc/{pid}/clear_refs", "w") as f:  # Linux >= 4.0: VmHWM starts again from VmRSS
        f.write("5")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_shared_memory_frame_costs_one_float32_copy_and_oversized_claims_nothing(checkpoint, tmp_path):
    server = ServerProcess(checkpoint, tmp_path)
    pid = server.process.pid
    h, w = 2048, 4096
    frame_bytes = h * w * 3 * 4  # the float32 RGB frame the server keeps: 96 MiB
    pixels = np.random.default_rng(1).random((h, w, 4), np.float32)  # RGBA float32: a 128 MiB segment
    segment = shared_memory.SharedMemory(create=True, size=pixels.nbytes)
    np.ndarray(pixels.shape, pixels.dtype, buffer=segment.buf)[...] = pixels
    desc = {"name": segment.name, "dtype": "float32", "shape": [h, w, 4], "offset": 0}
    sparse = shared_memory.SharedMemory(create=True, size=8192 * 8200 * 4)  # never written: takes no memory
    try:
        sock = raw_socket(server.address, 30000)
        clip = request(sock, "open_clip", {"source": "inline", "frames": "1-2", "colorspace": "ACEScg"}).content["clip"]
        small = dict(desc, shape=[16, 16, 4])
        assert request(sock, "put_frame", {"clip": clip, "frame": 2, "shm": small}).msg_type == "put_frame_reply"

        _reset_peak(pid)
        before, _ = _memory(pid)
        assert request(sock, "put_frame", {"clip": clip, "frame": 1, "shm": desc}).msg_type == "put_frame_reply"
        _, peak = _memory(pid)
        growth = peak - before
        # the shared pages the server reads count in its RSS too: segment (1.33x) + the one copy (1x)
        print(
            f"put_frame of a {pixels.nbytes >> 20} MiB segment: peak RSS +{growth >> 20} MiB "
            f"({growth / frame_bytes:.2f}x the {frame_bytes >> 20} MiB float32 frame)"
        )
        assert growth < 3 * frame_bytes, f"peak RSS grew {growth >> 20} MiB for a {frame_bytes >> 20} MiB frame"

        # over the default frame limit (8192x8192): refused before the segment is even opened
        _reset_peak(pid)
        before, _ = _memory(pid)
        claim = dict(desc, name=sparse.name, shape=[8200, 8192, 1])
        reply = request(sock, "put_frame", {"clip": clip, "frame": 1, "shm": claim})
        _, peak = _memory(pid)
        assert reply.content["code"] == "too_large", reply.content
        assert peak - before < frame_bytes // 8, f"peak RSS grew {(peak - before) >> 20} MiB for a refused claim"

        # closing the clip gives its frames back
        assert request(sock, "close_clip", {"clip": clip}).msg_type == "close_clip_reply"
        after, _ = _memory(pid)
        print(f"after close_clip: RSS {after - before:+d} bytes against before the refused claim")
        assert after - before < frame_bytes // 2
        sock.close()
    finally:
        for s in (segment, sparse):
            s.close()
            s.unlink()
        server.stop()


# --- 7: keys -----------------------------------------------------------------------------------------------------
def test_keys_are_private_whatever_the_umask_and_serve_refuses_an_exposed_secret(checkpoint, tmp_path):
    folder = tmp_path / "keys"
    proc = subprocess.run(
        [sys.executable, "-m", "mattebridge.cli", "keys", str(folder)],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: os.umask(0),
    )  # the loosest umask there is
    assert proc.returncode == 0, proc.stderr

    def mode(p):
        return stat.S_IMODE(os.stat(p).st_mode)

    assert mode(folder) == 0o700 and mode(folder / "clients") == 0o700
    assert mode(folder / "server.key_secret") == 0o600
    assert mode(folder / "server.key") == 0o644  # public: clients need it

    secret = folder / "server.key_secret"
    for exposed in (0o644, 0o640, 0o604):
        os.chmod(secret, exposed)
        code, _, err = run_cli(
            "serve", "--bind", f"tcp://127.0.0.1:{free_port()}", "--keys", folder, *model_args(checkpoint), timeout=120
        )
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1, err
        assert (
            lines[0].startswith(
                f"mattebridge: error: --keys {folder}: {secret} is open to other users (mode {exposed:04o})"
            )
            and f"chmod 600 {secret}" in lines[0]
        )


# --- 13: unsent frames, a server stopped mid-job -----------------------------------------------------------------
def test_propagating_an_inline_clip_with_unsent_frames_is_not_found(mb_server):
    """docs/protocol.md: a frame of an inline clip that was not sent is `not_found`, also when the propagation's
    prompts are on that frame (their checks used to call it a bad field)."""
    sock = raw_socket(mb_server.address)
    clip = request(sock, "open_clip", {"source": "inline", "frames": "1-2", "colorspace": "ACEScg"}).content["clip"]
    pixels = np.zeros((16, 16, 3), np.float32)
    desc = {"buffer": 0, "dtype": "float32", "shape": [16, 16, 3]}
    reply = request(sock, "put_frame", {"clip": clip, "frame": 1, "pixels": desc}, [pixels])
    assert reply.msg_type == "put_frame_reply"
    for frame in (1, 2):  # prompts on the sent frame, then on the unsent one
        reply = request(sock, "propagate", {"clip": clip, "buffers": True, "prompts": prompts_doc("a", frame=frame)})
        assert reply.content["code"] == "not_found", reply.content
        assert reply.content["message"] == "frames not sent yet (put_frame): 2" and one_line(reply.content)
    request(sock, "close_clip", {"clip": clip})
    sock.close()


def test_track_on_a_server_stopped_mid_job_says_so_in_one_line(checkpoint, bedroom_plate, tmp_path):
    out = tmp_path / "m"
    server = ServerProcess(checkpoint, tmp_path)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mattebridge.cli",
            "track",
            bedroom_plate,
            "--frames",
            "1001-1020",
            "--point",
            "300,300@1001",
            "--colorspace",
            "ACEScg",
            "--direction",
            "forward",
            "--out",
            str(out / "hero.####.exr"),
            "--timeout",
            "2",
            "--server",
            server.address,
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(600):  # until two frames are on disk (or the track is over)
            if len([n for n in os.listdir(out) if not n.startswith(".")] if out.is_dir() else []) >= 2:
                break
            if proc.poll() is not None:
                break
            time.sleep(0.1)
        assert server.stop(signal.SIGTERM) == 0
        err = proc.communicate(timeout=120)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
        server.stop()
    lines = err.strip().splitlines()
    assert proc.returncode == 2 and "Traceback" not in err, err
    assert lines[-1].startswith(f"mattebridge: error: {server.address}: the server stopped and cancelled job "), err
    assert "(the server is shutting down) after" in lines[-1] and lines[-1].endswith("the server went away"), err
    assert "is `mattebridge serve` running" not in err
