"""`mattebridge serve`: one ROUTER socket, the clients behind it, and the GPU worker (docs/architecture.md §4).

The socket thread answers hello/status/cancel itself, keeps each client's heartbeat, refuses work past
the queue bound with `busy`, answers a repeated request id from its reply cache (the client's retry after
a timeout), and hands everything else to the worker, whose replies it sends on.
"""

from __future__ import annotations

import logging
import queue
import signal
import socket
import threading
import time
import uuid
from collections import OrderedDict
from typing import Dict, Optional

import zmq

from mattebridge.core import __version__
from mattebridge.core.engine import catalog
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

from .access import Roots, load_server_keys
from .clips import FEATURE_CACHE_MB
from .worker import MAX_CLIPS_PER_CLIENT, MAX_FRAME_PIXELS, MAX_OBJECTS, Worker

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
        model,
        roots: Roots,
        keys: Optional[str] = None,
        client_timeout: float = 30.0,
        max_queue: int = 32,
        max_jobs: int = 8,
        max_message: int = 1 << 30,
        max_clips_per_client: int = MAX_CLIPS_PER_CLIENT,
        max_objects: int = MAX_OBJECTS,
        max_frame_pixels: int = MAX_FRAME_PIXELS,
        feature_cache_mb: int = FEATURE_CACHE_MB,
    ):
        self.address, self.model, self.roots, self.keys = address, model, roots, keys
        self.client_timeout, self.max_queue, self.max_message = client_timeout, max_queue, max_message
        self.limits = {
            "max_queue": max_queue,
            "max_jobs": max_jobs,
            "max_clips_per_client": max_clips_per_client,
            "max_objects": max_objects,
            "max_frame_pixels": max_frame_pixels,
            "max_message": max_message,
            "feature_cache_mb": feature_cache_mb,
        }
        self.session = uuid.uuid4().hex
        self.started = time.monotonic()
        self.clients: Dict[bytes, PeerState] = {}
        self._outbox: "queue.Queue" = queue.Queue()
        self._stop = threading.Event()
        self.ctx = zmq.Context()
        self.worker = Worker(
            model,
            roots,
            self._post,
            max_jobs=max_jobs,
            max_clips=max_clips_per_client,
            max_objects=max_objects,
            max_frame_pixels=max_frame_pixels,
            feature_cache_mb=feature_cache_mb,
        )
        self._wake_lock = threading.Lock()

    # --- from the worker thread ---------------------------------------------------------------
    def _post(self, client: bytes, msg: Message) -> None:
        self._outbox.put((client, msg))
        with self._wake_lock:
            self._wake_push.send(b"", zmq.NOBLOCK)

    def stop(self, *_):
        self._stop.set()

    # --- the socket thread --------------------------------------------------------------------------
    def run(self) -> None:
        router = self.ctx.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 1000)
        router.setsockopt(zmq.SNDHWM, 0)  # results stream to live clients; dead ones are dropped by heartbeat
        router.setsockopt(zmq.MAXMSGSIZE, self.max_message)
        auth = None
        if self.keys:
            from zmq.auth.thread import ThreadAuthenticator

            public, secret, allow = load_server_keys(self.keys)
            auth = ThreadAuthenticator(self.ctx)
            auth.start()
            auth.configure_curve(domain="*", location=allow if allow else zmq.auth.CURVE_ALLOW_ANY)
            router.curve_server = True
            router.curve_publickey, router.curve_secretkey = public, secret
        try:
            router.bind(self.address)
        except zmq.ZMQError as e:
            if auth:
                auth.stop()
            from mattebridge.core.errors import MatteBridgeError

            raise MatteBridgeError(f"--bind {self.address}: {e}") from None
        wake = self.ctx.socket(zmq.PULL)
        wake.bind(f"inproc://wake-{self.session}")
        self._wake_push = self.ctx.socket(zmq.PUSH)
        self._wake_push.connect(f"inproc://wake-{self.session}")
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self.stop)
        self.worker.start()
        log.info(
            "serving %s on %s (%s, input %dpx), session %s",
            self.model.name,
            self.address,
            self.model.device,
            self.model.image_size,
            self.session[:8],
        )
        log.info("allowed roots: %s", ", ".join(self.roots.roots))
        print(f"mattebridge serve: ready on {self.address}", flush=True)
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        poller.register(wake, zmq.POLLIN)
        last_reap = time.monotonic()
        try:
            while not self._stop.is_set():
                events = dict(poller.poll(200))
                if router in events:
                    for _ in range(100):  # a burst, then let replies out
                        try:
                            frames = router.recv_multipart(zmq.NOBLOCK, copy=False)
                        except zmq.Again:
                            break
                        self._receive(router, frames)
                if wake in events:
                    while True:
                        try:
                            wake.recv(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                self._flush(router)
                if time.monotonic() - last_reap > min(1.0, self.client_timeout / 4):
                    self._reap()
                    last_reap = time.monotonic()
            log.info("stopping: cancelling running jobs")
            self.worker.stop()
            self.worker.join(timeout=120)
            self._flush(router)
        finally:
            router.close(linger=1000)
            wake.close(linger=0)
            self._wake_push.close(linger=0)
            if auth:
                auth.stop()
            self.ctx.term()
        log.info("stopped")

    def _send(self, router, client: bytes, msg: Message) -> list:
        msg.session = self.session
        frames = encode(msg)
        try:
            router.send_multipart([client, *frames], copy=False)
        except zmq.ZMQError as e:  # the client's pipe is gone
            log.debug("reply to %s dropped: %s", client.hex()[:8], e)
        return frames

    def _flush(self, router) -> None:
        while True:
            try:
                client, msg = self._outbox.get_nowait()
            except queue.Empty:
                return
            frames = self._send(router, client, msg)
            state = self.clients.get(client)
            if state is not None and msg.parent_id in state.replies and state.replies[msg.parent_id] is None:
                state.replies[msg.parent_id] = frames

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
            self._dispatch(router, client, state, msg)
        except ProtocolError as e:
            log.warning("%s %s -> %s: %s", client.hex()[:8], msg.msg_type, e.code, e)
            self._send(router, client, Message("error", error_content(e.code, str(e), **e.extra), parent_id=msg.msg_id))
        except Exception as e:  # a bug: nothing a client sends may end the receive loop
            log.exception("%s %s: internal error", client.hex()[:8], msg.msg_type)
            text = str(e).splitlines()[0] if str(e) else type(e).__name__
            self._send(router, client, Message("error", error_content("internal", text), parent_id=msg.msg_id))

    def _dispatch(self, router, client: bytes, state: PeerState, msg: Message) -> None:
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
                router.send_multipart([client, *cached], copy=False)
            return
        load = self.worker.pending()
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
        self.worker.submit(client, msg)

    def _answer(self, client: bytes, msg: Message) -> dict:
        if msg.msg_type == "hello":
            m = self.model
            return {
                "server_version": __version__,
                "protocol": VERSION,
                "session": self.session,
                "model": m.name,
                "checkpoint_sha256": m.sha256,
                "device": str(m.device),
                "image_size": m.image_size,
                "family": m.family,
                # what --model could load here (matting models refine edges; they do not track)
                "models": [r["name"] for r in catalog.listing() if r["present"] and r["engine"] != "matting"],
                "capabilities": CAPABILITIES,
                "host": socket.gethostname(),
                "heartbeat_interval": round(self.client_timeout / 4, 3),
                "limits": self.limits,
            }
        if msg.msg_type == "cancel":
            job = msg.content.get("job")
            if job is not None and not isinstance(job, str):
                raise ProtocolError("bad_field", "job: expected the propagate request's msg_id")
            return {"cancelled": self.worker.cancel(client, job)}
        snap = self.worker.snapshot()
        return {
            "session": self.session,
            "uptime": round(time.monotonic() - self.started, 1),
            "queue": {"waiting": snap["queue"], "max": self.max_queue},
            "jobs": snap["jobs"],
            "clips": snap["clips"],
            "clients": len(self.clients),
            "frames_done": snap["frames_done"],
            "memory": _memory(self.model.device),
        }

    def _reap(self) -> None:
        now = time.monotonic()
        for client, state in list(self.clients.items()):
            if now - state.seen > self.client_timeout:
                log.info("%s silent for %.0fs", client.hex()[:8], now - state.seen)
                self._forget(client, "the client stopped heartbeating")

    def _forget(self, client: bytes, why: str) -> None:
        self.clients.pop(client, None)
        self.worker.cancel(client, None, why)
        self.worker.drop(client)  # not a queued request: it takes no --max-queue slot from live clients


def _summary(content: dict) -> str:
    keys = ("clip", "frame", "object", "frames", "pattern", "source", "direction", "out", "job")
    parts = [f"{k}={content[k]}" for k in keys if isinstance(content.get(k), (str, int))]
    return (" " + " ".join(parts)) if parts else ""


def _memory(device) -> dict:
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    out["rss_mb"] = round(int(line.split()[1]) / 1024, 1)
    except OSError:
        import resource

        out["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if device.type == "cuda":
        import torch

        out["cuda_allocated_mb"] = round(torch.cuda.memory_allocated(device) / 2**20, 1)
        out["cuda_reserved_mb"] = round(torch.cuda.memory_reserved(device) / 2**20, 1)
    return out
