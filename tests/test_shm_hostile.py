"""Shared-memory frames from a hostile client: a segment that shrinks while the server reads it.

A mapping read past the end of a file that shrank kills the reading process (SIGBUS), so the server reads a
client's segment through its file descriptor and answers a short read with `bad_buffer` (docs/security.md: nothing
a client sends ends the receive loop, a dead worker costs only its own clips)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import threading
from multiprocessing import shared_memory

import numpy as np
import pytest
from conftest import ServerProcess, raw_socket

from mattebridge.core.wire.client import Client
from mattebridge.core.wire.protocol import Message, ProtocolError, decode, encode
from mattebridge.core.wire.shm import read_shared_rgb, shared_layout, to_rgb32

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="POSIX shared memory, ftruncate")


def request(sock, msg_type, content=None, buffers=()):
    sock.send_multipart(encode(Message(msg_type, content or {}, list(buffers))))
    return decode(sock.recv_multipart())


# --- the reader, deterministically ----------------------------------------------------------------------------
# Run in a child process: a reader that touches a mapping of the shrunk segment dies of SIGBUS, and the test must
# report that as a failure rather than die with it.
_SHRINK = textwrap.dedent(
    """
    import hashlib, os, sys
    from multiprocessing import shared_memory
    import numpy as np
    from mattebridge.core.wire import shm
    from mattebridge.core.wire.protocol import ProtocolError

    how = sys.argv[1]
    h, w = 256, 256
    size = h * w * 3 * 4
    segment = shared_memory.SharedMemory(create=True, size=size)
    fd = segment._fd
    np.ndarray((h, w, 3), np.float32, buffer=segment.buf)[...] = 0.5
    try:
        if how == "after_check":
            # the segment shrinks after its size was checked, before its pixels are read: the reader's hash is
            # started (or, reading a mapping, given the mapping) only after the check
            real = hashlib.sha1

            class Hooked:
                @staticmethod
                def sha1(*args):
                    os.ftruncate(fd, 4096)
                    return real(*args)

            shm.hashlib = Hooked
        else:  # "shorter": the segment is shorter than the size the check is shown
            real_fstat = os.fstat

            def fstat(f):
                st = real_fstat(f)
                if st.st_size == 4096:
                    st = os.stat_result(tuple(st)[:6] + (size,) + tuple(st)[7:])
                return st

            os.ftruncate(fd, 4096)
            os.fstat = fstat
        layout = shm.shared_layout({"name": segment.name, "dtype": "float32", "shape": [h, w, 3], "offset": 0})
        try:
            shm.read_shared_rgb(layout)
            print("READ", flush=True)
        except ProtocolError as e:
            print("REFUSED", e.code, str(e).replace(chr(10), "|"), flush=True)
    finally:
        segment.close()
        segment.unlink()
    """
)


@pytest.mark.parametrize("how", ["after_check", "shorter"])
def test_a_segment_shorter_than_its_layout_is_bad_buffer_not_sigbus(how):
    child = subprocess.run([sys.executable, "-c", _SHRINK, how], capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, (
        f"the reader died (exit {child.returncode}, SIGBUS is -7): {child.stdout}{child.stderr[-2000:]}"
    )
    words = child.stdout.strip().split(" ", 2)
    assert words[:2] == ["REFUSED", "bad_buffer"], child.stdout + child.stderr[-2000:]
    assert words[2].startswith("shm: ") and "|" not in words[2]


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float16", "float32"])
@pytest.mark.parametrize("channels", [None, 1, 3, 4])
def test_reading_through_the_descriptor_gives_the_converted_pixels_and_the_stamp(dtype, channels):
    """The band-wise read matches to_rgb32 of the described bytes and their sha1 (the resume stamp)."""
    h, w, offset = 1031, 517, 12  # bands of rows that do not divide the frame; an offset in the segment
    shape = (h, w) if channels is None else (h, w, channels)
    rng = np.random.default_rng(7)
    if dtype.startswith("float"):
        pixels = (rng.standard_normal(shape) * 4).astype(dtype)
        pixels.reshape(-1)[:3] = [np.nan, np.inf, -np.inf]
    else:
        pixels = rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)
    segment = shared_memory.SharedMemory(create=True, size=offset + pixels.nbytes + 100)
    try:
        segment.buf[offset : offset + pixels.nbytes] = pixels.tobytes()
        layout = shared_layout({"name": segment.name, "dtype": dtype, "shape": list(shape), "offset": offset})
        rgb, stamp = read_shared_rgb(layout)
        assert stamp == hashlib.sha1(pixels.tobytes()).hexdigest()
        assert rgb.dtype == np.float32 and rgb.shape == (h, w, 3)
        np.testing.assert_array_equal(rgb, to_rgb32(pixels))
        # one byte past the end: refused before anything is read
        with pytest.raises(ProtocolError) as e:
            read_shared_rgb(layout._replace(offset=segment.size - pixels.nbytes + 1))
        assert e.value.code == "bad_buffer" and f"has {segment.size}" in str(e.value)
    finally:
        segment.close()
        segment.unlink()


def test_a_missing_segment_is_not_found():
    layout = shared_layout({"name": "mb_no_such_segment", "dtype": "float32", "shape": [4, 4, 3], "offset": 0})
    with pytest.raises(ProtocolError) as e:
        read_shared_rgb(layout)
    assert e.value.code == "not_found"


# --- a real server, raced -------------------------------------------------------------------------------------
def test_a_client_shrinking_its_segment_mid_read_never_kills_the_worker(checkpoint, tmp_path):
    """The reproduction: a thread flips the segment's size while put_frame reads it. Every reply is the frame
    taken (the race lost) or a one-line `bad_buffer`, never `worker_lost`; another client's clip on the same
    worker still answers afterwards, and so does the attacker's, given an honest frame."""
    server = ServerProcess(checkpoint, tmp_path)
    h, w = 1536, 1536
    size = h * w * 3 * 4
    segment = shared_memory.SharedMemory(create=True, size=size)
    stop = threading.Event()
    try:
        with Client(server.address, timeout=120) as victim:
            clip = victim.open_inline_clip("1-1", colorspace="ACEScg")
            clip.put_frame(1, np.random.default_rng(1).random((64, 64, 3), np.float32), transport="inline")
            assert clip.prompt(1, "a", points=[(10, 10, True)], edge="raw").alpha["a"].shape == (64, 64)

            attacker = raw_socket(server.address, 120000)
            reply = request(attacker, "open_clip", {"source": "inline", "frames": "1-1", "colorspace": "ACEScg"})
            aclip = reply.content["clip"]
            desc = {"name": segment.name, "dtype": "float32", "shape": [h, w, 3], "offset": 0}
            fd = segment._fd

            def flip():
                while not stop.is_set():
                    os.ftruncate(fd, 4096)
                    os.ftruncate(fd, size)

            flipper = threading.Thread(target=flip, daemon=True)
            flipper.start()
            seen = {}
            try:
                for _ in range(40):
                    reply = request(attacker, "put_frame", {"clip": aclip, "frame": 1, "shm": desc})
                    code = reply.msg_type if reply.msg_type == "put_frame_reply" else reply.content.get("code")
                    assert code in ("put_frame_reply", "bad_buffer"), reply.content
                    if code == "bad_buffer":
                        message = reply.content["message"]
                        assert message.startswith("shm: ") and "\n" not in message, message
                        code += " (size check)" if " needs " in message else " (mid-read)"
                    seen[code] = seen.get(code, 0) + 1
            finally:
                stop.set()
                flipper.join(10)
            print(f"40 put_frames of a segment flipping between 4096 and {size} bytes: {seen}")

            os.ftruncate(fd, size)  # honest again: taken
            reply = request(attacker, "put_frame", {"clip": aclip, "frame": 1, "shm": desc})
            assert reply.msg_type == "put_frame_reply", reply.content
            reply = request(attacker, "prompt", {"clip": aclip, "frame": 1, "object": "x", "points": [[5, 5, True]]})
            assert reply.msg_type == "prompt_reply", reply.content
            attacker.close()

            # the other client's clip lived through it all, on the same worker
            assert clip.prompt(1, "a", points=[(20, 20, True)], edge="raw").alpha["a"].shape == (64, 64)
        assert server.process.poll() is None
    finally:
        stop.set()
        segment.close()
        segment.unlink()
        server.stop()
