"""The thin client every host uses to talk to `mattebridge serve` (docs/client.md, docs/protocol.md).

Imports only the standard library, numpy and pyzmq, and keeps to Python 3.9 syntax: it runs inside Nuke,
Blender and Resolve. Every call takes the client's lock, so any thread of a host may use it; none needs
the host's main thread. Replies are matched to requests by id, so a propagation can stream on one thread
while another thread previews, cancels or asks for status.
"""

from __future__ import annotations

import os
import socket as _socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Deque, Dict, List, Optional, Sequence

import numpy as np
import zmq

from mattebridge.core.errors import MatteBridgeError
from mattebridge.core.wire.protocol import IDEMPOTENT, Message, ProtocolError, decode, encode, pack_array, unpack_array
from mattebridge.core.wire.vocabulary import DEFAULT_ADDRESS

# The reason a propagation's stream ends with when the server is stopped (SIGTERM, SIGINT): docs/protocol.md.
SERVER_SHUTDOWN = "the server is shutting down"


class ServerUnreachable(MatteBridgeError):
    """No reply within the timeout (after retries)."""


class ServerStopped(ServerUnreachable):
    """No reply from a server that said it was shutting down (it cancelled this client's job as it went)."""


class ServerRestarted(MatteBridgeError):
    """A different server process answers now: clips opened before are gone."""


class ServerError(MatteBridgeError):
    """An error reply: `code` (docs/protocol.md) and the server's one-line message."""

    def __init__(self, code: str, message: str, extra: Optional[dict] = None):
        super().__init__(message)
        self.code, self.extra = code, extra or {}


class ClipLost(ServerError):
    """The model worker holding the clip ended (`worker_lost`): the clip is gone, the server is not; open it again."""


class Busy(ServerError):
    """The server's queue is full; try again after `retry_after` seconds."""

    @property
    def retry_after(self) -> float:
        return float(self.extra.get("retry_after", 1.0))


@dataclass
class Matte:
    frame: int
    geometry: dict  # {"display": [x, y, w, h], "data": [x, y, w, h], "pixel_aspect": 1.0}
    alpha: Dict[str, np.ndarray] = field(default_factory=dict)  # object -> float32 (data h, data w)
    scores: Dict[str, Optional[float]] = field(default_factory=dict)
    ious: Dict[str, Optional[float]] = field(default_factory=dict)


@dataclass
class FrameResult:
    frame: int
    done: int
    total: int
    paths: Dict[str, str]
    skipped: bool
    scores: Dict[str, float]
    ious: Dict[str, float]
    alpha: Dict[str, np.ndarray] = field(default_factory=dict)
    geometry: Optional[dict] = None


def load_server_key(key: str) -> bytes:
    """A CurveZMQ public key: a key file from `mattebridge keys`, or the 40-character z85 text itself."""
    if os.path.exists(key):
        import zmq.auth

        public, _ = zmq.auth.load_certificate(key)
        return public
    if len(key) == 40:
        return key.encode()
    raise MatteBridgeError(f"server key {key!r}: neither a key file nor a 40-character z85 key")


class Client:
    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        timeout: float = 10.0,
        retries: int = 2,
        heartbeat: float = 5.0,
        server_key: Optional[str] = None,
    ):
        self.address, self.timeout, self.retries, self.heartbeat = address, timeout, retries, heartbeat
        self._lock = threading.RLock()
        self._inbox: Dict[Optional[str], Deque[Message]] = {}
        self._last_send = 0.0
        self._ctx = zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        # a DEALER with no live peer (server down, CURVE handshake refused) blocks on send: bound it
        self._sock.setsockopt(zmq.SNDTIMEO, int(timeout * 1000))
        if server_key:
            self._sock.curve_serverkey = load_server_key(server_key)
            self._sock.curve_publickey, self._sock.curve_secretkey = zmq.curve_keypair()
        self._sock.connect(address)
        self._shm = None
        self.session: Optional[str] = None
        self._stopped: Optional[str] = None  # what the server said as it shut down, once it has
        self._closed = False
        try:
            self.info = self.hello()
        except MatteBridgeError:
            self._sock.close(linger=0)
            raise
        self.session = self.info["session"]
        # beat well inside the server's timeout, or it frees this client's clips while we wait on it
        self.heartbeat = min(heartbeat, float(self.info.get("heartbeat_interval", heartbeat)))
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, name="mattebridge-heartbeat", daemon=True)
        self._beat.start()

    # --- plumbing ---------------------------------------------------------------------------------
    def _send(self, msg: Message) -> None:
        with self._lock:
            if self._closed:
                raise MatteBridgeError(f"{self.address}: client is closed")
            self._inbox.setdefault(msg.msg_id, deque())
            try:
                self._sock.send_multipart(encode(msg), copy=False)
            except zmq.Again:
                self._gone()
                raise ServerUnreachable(
                    f"{self.address}: cannot send for {self.timeout:g}s: is `mattebridge serve` "
                    f"running (with the same --keys)?"
                ) from None
            self._last_send = time.monotonic()

    def _receive(self, wait: float) -> None:
        """Move what has arrived (waiting up to `wait` seconds for something) into the inbox."""
        with self._lock:
            if self._sock.poll(int(wait * 1000), zmq.POLLIN):
                while True:
                    try:
                        frames = self._sock.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    try:
                        msg = decode(frames)
                    except ProtocolError:
                        continue  # not from a mattebridge server: ignore
                    box = self._inbox.get(msg.parent_id)
                    if box is not None:  # replies to requests nobody waits for any more are dropped
                        box.append(msg)

    def _next(self, msg_id: str, timeout: float) -> Optional[Message]:
        """The next message answering `msg_id`, or None after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                box = self._inbox.get(msg_id)
                if box is None:
                    raise MatteBridgeError(f"request {msg_id}: nothing is waiting for its replies any more")
                if box:
                    return self._check(box.popleft())
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._receive(min(remaining, 0.05))
            time.sleep(0)  # let another thread take the lock between polls

    def _check(self, msg: Message) -> Message:
        if self.session is not None and msg.session and msg.session != self.session:
            raise ServerRestarted(
                f"{self.address}: the server restarted (session {msg.session[:8]}, was "
                f"{self.session[:8]}); clips opened before are gone: open them again"
            )
        if msg.msg_type == "error":
            code = str(msg.content.get("code", "internal"))
            text = str(msg.content.get("message", "unknown error"))
            extra = {k: v for k, v in msg.content.items() if k not in ("code", "message")}
            kind = {"busy": Busy, "worker_lost": ClipLost}.get(code, ServerError)
            raise kind(code, f"server: {text}", extra)
        return msg

    def _done(self, msg_id: str) -> None:
        with self._lock:
            self._inbox.pop(msg_id, None)

    def request(self, msg_type: str, content: Optional[dict] = None, buffers: Sequence[Any] = ()) -> Message:
        """Send a request and wait for its reply (Lazy Pirate: on a timeout, check the server is alive,
        resend idempotent requests, give up after `retries`)."""
        msg = Message(msg_type, content or {}, list(buffers))
        try:
            self._send(msg)
            tries = 0
            while True:
                reply = self._next(msg.msg_id, self.timeout)
                if reply is not None:
                    return reply
                tries += 1
                self._gone()
                if msg_type in ("hello", "status"):  # answered at once by a live server
                    if tries > self.retries:
                        raise ServerUnreachable(
                            f"{self.address}: no reply in {self.timeout:g}s "
                            f"({tries} tries): is `mattebridge serve` running?"
                        )
                    self._send(msg)
                    continue
                self.ping()  # raises if the server is gone or restarted; else it is busy with our request
                if msg_type in IDEMPOTENT:
                    self._send(msg)  # the server answers a repeated id from its cache
        finally:
            self._done(msg.msg_id)

    def _gone(self) -> None:
        """No answer after the server said it was shutting down: say so (instead of retrying for a while,
        then asking whether `serve` runs). A restarted server would have answered, with its new session."""
        if self._stopped:
            raise ServerStopped(f"{self.address}: {self._stopped}; no reply since: the server went away")

    def ping(self) -> dict:
        """hello, checked against the session this client started with."""
        info = self.request("hello").content
        if self.session is not None and info.get("session") != self.session:
            raise ServerRestarted(f"{self.address}: the server restarted; clips opened before are gone")
        return info

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat / 2):
            try:
                with self._lock:
                    if self._closed:
                        return
                    if time.monotonic() - self._last_send >= self.heartbeat:
                        self._send(Message("heartbeat"))
            except ServerUnreachable:
                continue  # the caller's next request reports it; beat again once the server is back
            except (zmq.ZMQError, MatteBridgeError):
                return

    # --- the API ------------------------------------------------------------------------------------
    def hello(self) -> dict:
        return self.request("hello").content

    def status(self) -> dict:
        return self.request("status").content

    def open_clip(
        self,
        pattern: str,
        frames,
        layer: Optional[str] = None,
        colorspace: Optional[str] = None,
        ocio: Optional[str] = None,
        view: Optional[str] = None,
    ) -> "Clip":
        """A plate sequence the server reads itself (the cheapest transport): pattern + "FIRST-LAST"."""
        content = {
            "source": "files",
            "pattern": os.path.abspath(pattern),
            "frames": _frames(frames),
            "layer": layer,
            "colorspace": colorspace,
            "ocio": ocio if ocio is None or ocio.startswith("ocio://") else os.path.abspath(ocio),  # the server's cwd
            "view": view,
        }
        return Clip(self, self.request("open_clip", content).content)

    def open_inline_clip(
        self, frames, colorspace: Optional[str] = None, ocio: Optional[str] = None, view: Optional[str] = None
    ) -> "Clip":
        """A clip whose pixels the host sends (put_frame): by shared memory on this host, else inline."""
        content = {"source": "inline", "frames": _frames(frames), "colorspace": colorspace, "ocio": ocio, "view": view}
        return Clip(self, self.request("open_clip", content).content)

    def same_host(self) -> bool:
        return self.info.get("host") == _socket.gethostname() and (
            self.address.startswith("ipc://")
            or "127.0.0.1" in self.address
            or "localhost" in self.address
            or "[::1]" in self.address
        )

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                self._send(Message("goodbye"))
            except (zmq.ZMQError, MatteBridgeError):
                pass
            self._closed = True
            if self._shm is not None:
                self._shm.close()
            self._sock.close(linger=200)
        if hasattr(self, "_stop"):
            self._stop.set()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _frames(frames) -> str:
    if isinstance(frames, str):
        return frames
    first, last = frames
    return f"{int(first)}-{int(last)}"


class Clip:
    def __init__(self, client: Client, reply: dict):
        self.client = client
        self.id: str = reply["clip"]
        self.first, self.last = reply["frames"]
        self.inline: bool = reply["inline"]
        self._geometry: Dict[str, dict] = dict(reply["geometry"])
        self.colorspace, self.display, self.view = reply["colorspace"], reply["display"], reply["view"]
        self.config = reply["config"]

    def geometry(self, frame: int) -> dict:
        return self._geometry[str(frame)]

    def put_frame(
        self, frame: int, pixels: np.ndarray, geometry: Optional[dict] = None, transport: str = "auto"
    ) -> None:
        """Pixels of one frame over its data window, (h, w, 3|4) float16/float32 (or (h, w))."""
        pixels = np.asarray(pixels)
        content: Dict[str, Any] = {"clip": self.id, "frame": int(frame), "geometry": geometry}
        buffers: List[Any] = []
        if transport == "shm" or (transport == "auto" and self.client.same_host()):
            from mattebridge.core.wire.shm import SharedFrames

            with self.client._lock:
                if self.client._shm is None:
                    self.client._shm = SharedFrames()
                content["shm"] = self.client._shm.put(pixels)
                self.client.request("put_frame", content)
        elif transport in ("inline", "auto"):
            content["pixels"] = pack_array(pixels, buffers)
            self.client.request("put_frame", content, buffers)
        else:
            raise MatteBridgeError(f"transport {transport!r}: expected auto, shm or inline")
        self._geometry[str(frame)] = geometry or {
            "display": [0, 0, pixels.shape[1], pixels.shape[0]],
            "data": [0, 0, pixels.shape[1], pixels.shape[0]],
            "pixel_aspect": 1.0,
        }

    def prompt(
        self,
        frame: int,
        obj: str = "main",
        points: Sequence = (),
        box: Optional[Sequence[float]] = None,
        mask=None,
        edge: str = "soft",
    ) -> Matte:
        """Set `obj`'s prompt on `frame` (all its points, box or mask) and get that frame's matte back.
        points: (x, y, positive) in display-window pixels (docs/architecture.md §3). mask: a path the server can
        read, or an array over the display window."""
        content: Dict[str, Any] = {
            "clip": self.id,
            "frame": int(frame),
            "object": obj,
            "edge": edge,
            "points": [[float(x), float(y), bool(pos)] for x, y, pos in points],
            "box": None if box is None else [float(v) for v in box],
        }
        buffers: List[Any] = []
        if isinstance(mask, np.ndarray):
            content["mask"] = pack_array(mask, buffers)
        elif mask is not None:
            content["mask"] = os.path.abspath(str(mask))
        reply = self.client.request("prompt", content, buffers)
        alpha = unpack_array(reply.content["alpha"], reply.buffers, "alpha", ndim=(2,)).astype(np.float32)
        c = reply.content
        return Matte(c["frame"], c["geometry"], {obj: alpha}, {obj: c.get("score")}, {obj: c.get("iou")})

    def clear(self, frame: Optional[int] = None, obj: Optional[str] = None) -> dict:
        return self.client.request("clear", {"clip": self.id, "frame": frame, "object": obj}).content["prompts"]

    def prompts(self) -> dict:
        return self.client.request("prompts", {"clip": self.id}).content["prompts"]

    def propagate(
        self,
        direction: str = "both",
        out: Optional[str] = None,
        buffers: bool = False,
        layout: str = "files",
        channels: str = "A",
        edge: str = "soft",
        fill_holes: int = 0,
        stabilize: Optional[bool] = None,
        report: Optional[str] = None,
        cutout: Optional[str] = None,
        prompts: Optional[dict] = None,
        force: bool = False,
        foreground: Optional[str] = None,
        matte_tile: Optional[int] = None,
    ) -> "Propagation":
        def absolute(p):
            return None if p is None else os.path.abspath(p)

        content = {
            "clip": self.id,
            "direction": direction,
            "out": absolute(out),
            "buffers": buffers,
            "layout": layout,
            "channels": channels,
            "edge": edge,
            "fill_holes": fill_holes,
            "stabilize": stabilize,
            "report": absolute(report),
            "cutout": absolute(cutout),
            "prompts": prompts,
            "force": force,
            "foreground": absolute(foreground),
            "matte_tile": matte_tile,
        }
        return Propagation(self.client, content)

    def close(self) -> None:
        self.client.request("close_clip", {"clip": self.id})


class Propagation:
    """Iterate for per-frame results; `cancel()` from any thread (also to stop early); `summary` once it
    has ended. An error reply or a lost server raises from the iteration."""

    def __init__(self, client: Client, content: dict):
        self.client = client
        self.msg = Message("propagate", content)
        self.summary: Optional[dict] = None
        self.total: Optional[int] = None
        self._cancelled = False
        client._send(self.msg)

    @property
    def job(self) -> str:
        return self.msg.msg_id

    def cancel(self) -> None:
        self._cancelled = True
        if self.summary is None:
            self.client.request("cancel", {"job": self.job})

    def __iter__(self) -> "Propagation":
        return self

    def __next__(self) -> FrameResult:
        client = self.client
        while self.summary is None:
            try:
                msg = client._next(self.job, client.timeout)
                if msg is None:
                    client.ping()  # raises if the server is gone or restarted; else a frame is just slow
                    continue
            except MatteBridgeError:
                client._done(self.job)
                raise
            c = msg.content
            if msg.msg_type == "propagate_started":
                self.total = c["total"]
            elif msg.msg_type == "frame":
                alpha = {
                    o: unpack_array(d, msg.buffers, f"alpha[{o}]", ndim=(2,)).astype(np.float32)
                    for o, d in (c.get("alpha") or {}).items()
                }
                return FrameResult(
                    c["frame"],
                    c["done"],
                    c["total"],
                    c["paths"],
                    c["skipped"],
                    c["scores"],
                    c["ious"],
                    alpha,
                    c.get("geometry"),
                )
            elif msg.msg_type == "propagate_done":
                self.summary = {
                    "frames_written": c["frames_written"],
                    "frames_skipped": c["frames_skipped"],
                    "cancelled": c["status"] == "cancelled",
                    "reason": c.get("reason", ""),
                    "seconds": c["seconds"],
                }
                stopped = self.summary["cancelled"] and self.summary["reason"] == SERVER_SHUTDOWN
                self.summary["server_stopped"] = stopped
                if stopped:  # the stream ends normally; the next request reports it
                    done = c["frames_written"] + c["frames_skipped"]
                    client._stopped = (
                        f"the server stopped and cancelled job {self.job[:8]} ({SERVER_SHUTDOWN}) "
                        f"after {done}" + (f" of {self.total}" if self.total else "") + " frames"
                    )
                client._done(self.job)
        raise StopIteration
