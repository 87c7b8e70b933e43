"""`mattebridge serve`: one ROUTER socket, the clients behind it, and the model workers (docs/architecture.md §4).

This process is the front: it holds no model. It answers hello/status/cancel itself, keeps each client's
heartbeat, refuses work past the queue bound with `busy`, answers a repeated request id from its reply cache
(the client's retry after a timeout), and hands everything else to the worker process of the clip's device
(server/pool.py), whose answers it sends on.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
import uuid
from collections import OrderedDict
from typing import Dict, List, Optional

import zmq

from mattebridge.core import __version__
from mattebridge.core.errors import MatteBridgeError
from mattebridge.core.wire.protocol import (
    IDEMPOTENT,
    REQUESTS,
    VERSION,
    Message,
    ProtocolError,
    decode,
    encode,
    error_content,
)

from .access import load_server_keys, private_folder
from .device import memory
from .limits import FEATURE_CACHE_MB, MAX_CLIPS_PER_CLIENT, MAX_FRAME_PIXELS, MAX_OBJECTS
from .pool import WorkerPool

log = logging.getLogger("mattebridge.server")
CAPABILITIES = [
    "path",
    "shm",
    "inline",
    "buffers",
    "files",
    "layers",
    "cryptomatte",
    "rgba",
    "resume",
    "report",
    "cutout",
    "mask-buffer",
    "devices",
]
REPLY_CACHE = 8  # per client: recent replies, for requests resent after a timeout


class PeerState:
    """What the socket thread keeps about one connected client: when it was last heard, recent replies."""

    def __init__(self):
        self.seen = time.monotonic()
        self.replies: "OrderedDict[str, Optional[list]]" = OrderedDict()  # msg_id -> frames (None: in progress)


class Server:
    def __init__(
        self,
        address: str,
        devices: List[str],
        model: dict,
        roots: List[str],
        keys: Optional[str] = None,
        client_timeout: float = 30.0,
        max_queue: int = 32,
        max_jobs: int = 8,
        max_message: int = 1 << 30,
        max_clips_per_client: int = MAX_CLIPS_PER_CLIENT,
        max_objects: int = MAX_OBJECTS,
        max_frame_pixels: int = MAX_FRAME_PIXELS,
        feature_cache_mb: int = FEATURE_CACHE_MB,
        log_level: str = "info",
    ):
        """`model`: load_model's arguments (name, and model_options: checkpoint, config, image_size, compile);
        `roots`: the allowed roots, which every worker enforces."""
        self.address, self.devices, self.model, self.roots, self.keys = address, devices, model, roots, keys
        self.client_timeout, self.max_queue, self.max_message = client_timeout, max_queue, max_message
        self.max_clips = max_clips_per_client
        self.limits = {
            "max_queue": max_queue,
            "max_jobs": max_jobs,  # per device
            "max_clips_per_client": max_clips_per_client,
            "max_objects": max_objects,
            "max_frame_pixels": max_frame_pixels,
            "max_message": max_message,
            "feature_cache_mb": feature_cache_mb,  # per device
        }
        self.log_level = log_level
        self.session = uuid.uuid4().hex
        self.started = time.monotonic()
        self.clients: Dict[bytes, PeerState] = {}
        self._stop = threading.Event()
        self._stop_now = threading.Event()  # a second SIGINT/SIGTERM: do not wait for the frames in progress
        self.ctx = zmq.Context()

    def stop(self, *_):
        if self._stop.is_set():
            self._stop_now.set()
        self._stop.set()

    # --- the socket thread --------------------------------------------------------------------------
    def run(self) -> None:
        router = self.ctx.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 1000)
        router.setsockopt(zmq.SNDHWM, 0)  # results stream to live clients; dead ones are dropped by heartbeat
        router.setsockopt(zmq.MAXMSGSIZE, self.max_message)
        auth = self.pool = None
        try:
            if self.keys:
                from zmq.auth.thread import ThreadAuthenticator

                public, secret, allow = load_server_keys(self.keys)
                auth = ThreadAuthenticator(self.ctx)
                auth.start()
                auth.configure_curve(domain="*", location=allow if allow else zmq.auth.CURVE_ALLOW_ANY)
                router.curve_server = True
                router.curve_publickey, router.curve_secretkey = public, secret
            try:  # before any model loads: a taken port fails at once
                router.bind(self.address)
            except zmq.ZMQError as e:
                raise MatteBridgeError(f"--bind {self.address}: {e}") from None
            worker_config = {
                "model": self.model["name"],
                "model_options": self.model["options"],
                "roots": self.roots,
                "session": self.session,
                "limits": self.limits,
                "log_level": self.log_level,
            }
            self.pool = WorkerPool(self.ctx, self.devices, private_folder(), worker_config)
            self.pool.start()  # Ctrl-C while the models load ends the front, and its workers with it
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, self.stop)
            self._serve(router)
        finally:
            if self.pool is not None:
                self.pool.kill()
                for sock in (self.pool.requests, self.pool.replies):
                    sock.close(linger=0)
            router.close(linger=1000)
            if auth:
                auth.stop()
            self.ctx.term()
        log.info("stopped")

    def _serve(self, router) -> None:
        info = self.pool.model_info()
        log.info(
            "serving %s on %s (%s, input %dpx), session %s",
            info["model"],
            self.address,
            ", ".join(self.devices),
            info["image_size"],
            self.session[:8],
        )
        log.info("allowed roots: %s", ", ".join(self.roots))
        print(f"mattebridge serve: ready on {self.address}", flush=True)
        poller = zmq.Poller()
        for sock in (router, self.pool.requests, self.pool.replies):
            poller.register(sock, zmq.POLLIN)
        last_reap = time.monotonic()
        while not self._stop.is_set():
            events = dict(poller.poll(200))
            if router in events:
                for _ in range(100):  # a burst, then let replies out
                    try:
                        frames = router.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    self._receive(router, frames)
            self._relay(router)
            if time.monotonic() - last_reap > min(1.0, self.client_timeout / 4):
                for client, msg in self.pool.check():  # a dead worker's requests and jobs: `worker_lost`
                    self._remember(client, msg.parent_id, self._send(router, client, msg))
                self._reap()
                last_reap = time.monotonic()
        log.info("stopping: cancelling running jobs after their frames in progress (again to stop at once)")
        self.pool.stop()
        deadline = time.monotonic() + 120
        while self.pool.running() and time.monotonic() < deadline and not self._stop_now.is_set():
            poller.poll(100)
            self._relay(router)
        self._relay(router)

    def _relay(self, router) -> None:
        """The workers' answers, on to their clients (kept for a retry when the request was idempotent)."""
        for client, frames, parent in self.pool.receive():
            self._send_frames(router, client, frames)
            self._remember(client, parent, frames)

    def _remember(self, client: bytes, parent: Optional[str], frames: list) -> None:
        """The answer to an idempotent request, for the client's retry of it."""
        state = self.clients.get(client)
        if state is not None and parent in state.replies and state.replies[parent] is None:
            state.replies[parent] = frames

    def _send(self, router, client: bytes, msg: Message) -> list:
        msg.session = self.session
        frames = encode(msg)
        self._send_frames(router, client, frames)
        return frames

    def _send_frames(self, router, client: bytes, frames: list) -> None:
        try:
            router.send_multipart([client, *frames], copy=False)
        except zmq.ZMQError as e:  # the client's pipe is gone
            log.debug("reply to %s dropped: %s", client.hex()[:8], e)

    def _receive(self, router, frames) -> None:
        client = bytes(frames[0].buffer)
        state = self.clients.get(client)
        if state is None:
            state = self.clients[client] = PeerState()
            log.info("%s connected", client.hex()[:8])
        state.seen = time.monotonic()
        try:
            msg = decode(frames[1:], self.max_message)
        except ProtocolError as e:
            log.warning("%s sent a bad message: %s", client.hex()[:8], e)
            self._send(router, client, Message("error", error_content(e.code, str(e))))
            return
        try:
            self._dispatch(router, client, state, msg, frames[1:])
        except ProtocolError as e:
            log.warning("%s %s -> %s: %s", client.hex()[:8], msg.msg_type, e.code, e)
            self._send(router, client, Message("error", error_content(e.code, str(e), **e.extra), parent_id=msg.msg_id))
        except Exception as e:  # a bug: nothing a client sends may end the receive loop
            log.exception("%s %s: internal error", client.hex()[:8], msg.msg_type)
            text = str(e).splitlines()[0] if str(e) else type(e).__name__
            self._send(router, client, Message("error", error_content("internal", text), parent_id=msg.msg_id))

    def _dispatch(self, router, client: bytes, state: PeerState, msg: Message, frames: list) -> None:
        if msg.version != VERSION:
            raise ProtocolError("unsupported_version", f"protocol version {msg.version}; this server speaks {VERSION}")
        if msg.msg_type not in REQUESTS:
            raise ProtocolError(
                "unknown_type", f"message type {msg.msg_type!r} (expected one of {', '.join(REQUESTS)})"
            )
        if msg.msg_type == "heartbeat":
            return
        if msg.msg_type == "goodbye":  # the client is closing: free what it had now, not at its timeout
            self._forget(client, "the client closed")
            return
        log.info("%s %s%s", client.hex()[:8], msg.msg_type, _summary(msg.content))
        if msg.msg_type in ("hello", "status", "cancel"):
            self._send(
                router, client, Message(msg.msg_type + "_reply", self._answer(client, msg), parent_id=msg.msg_id)
            )
            return
        if msg.msg_type in IDEMPOTENT and msg.msg_id in state.replies:  # a retry
            cached = state.replies[msg.msg_id]
            if cached is not None:
                self._send_frames(router, client, cached)
            return
        load = self.pool.pending()
        if load >= self.max_queue:
            raise ProtocolError(
                "busy",
                f"{load} requests are waiting (the most this server queues)",
                retry_after=round(0.05 * load + 0.5, 2),
            )
        if msg.msg_type in IDEMPOTENT:
            state.replies[msg.msg_id] = None
            while len(state.replies) > REPLY_CACHE:
                state.replies.popitem(last=False)
        self.pool.forward(client, msg, frames, self.max_clips)

    def _answer(self, client: bytes, msg: Message) -> dict:
        if msg.msg_type == "hello":
            info = self.pool.model_info()
            return {
                "server_version": __version__,
                "protocol": VERSION,
                "session": self.session,
                "model": info.get("model"),
                "checkpoint_sha256": info.get("checkpoint_sha256"),
                "device": info.get("device"),  # the first ready worker's; every worker's below
                "devices": [s.info.get("device", s.device) for s in self.pool.slots],
                "image_size": info.get("image_size"),
                "family": info.get("family"),
                "models": info.get("models", []),
                "capabilities": CAPABILITIES,
                "host": socket.gethostname(),
                "heartbeat_interval": round(self.client_timeout / 4, 3),
                "limits": self.limits,
            }
        if msg.msg_type == "cancel":
            job = msg.content.get("job")
            if job is not None and not isinstance(job, str):
                raise ProtocolError("bad_field", "job: expected the propagate request's msg_id")
            return {"cancelled": self.pool.cancel(client, job, "cancelled by the client")}
        pool = self.pool.describe()
        return {
            "session": self.session,
            "uptime": round(time.monotonic() - self.started, 1),
            "queue": {"waiting": self.pool.pending(), "max": self.max_queue},
            "jobs": pool["jobs"],
            "clips": pool["clips"],
            "clients": len(self.clients),
            "frames_done": pool["frames_done"],
            "memory": memory(),  # this front process's; each worker's is in `workers`
            "workers": pool["workers"],
        }

    def _reap(self) -> None:
        now = time.monotonic()
        for client, state in list(self.clients.items()):
            if now - state.seen > self.client_timeout:
                log.info("%s silent for %.0fs", client.hex()[:8], now - state.seen)
                self._forget(client, "the client stopped heartbeating")

    def _forget(self, client: bytes, why: str) -> None:
        self.clients.pop(client, None)
        self.pool.forget(client, why)  # not a queued request: it takes no --max-queue slot from live clients


def _summary(content: dict) -> str:
    """A request's names and numbers for the log, on one line: a client's text is quoted (repr escapes a newline,
    so it cannot forge a log line) and cut to 120 characters."""
    keys = ("clip", "frame", "object", "frames", "pattern", "source", "direction", "out", "job")
    parts = [f"{k}={_loggable(content[k])}" for k in keys if isinstance(content.get(k), (str, int))]
    return (" " + " ".join(parts)) if parts else ""


def _loggable(value) -> str:
    return repr(value[:120]) if isinstance(value, str) else str(value)
