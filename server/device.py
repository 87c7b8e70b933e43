"""One model worker process of `mattebridge serve` (`python -m mattebridge.server.device`, started by the front,
server/pool.py): the model on one device, its clips and their propagations, run by the Worker thread.

The front hands over requests on a DEALER socket in the server's private folder (0700), answers arrive back on a
PUSH socket, already encoded for the client. The settings come as JSON on stdin from the front itself. A worker
ends when the front says stop, or when the front is gone (its parent process changed).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time

import zmq

from mattebridge.core.errors import MatteBridgeError
from mattebridge.core.wire.protocol import Message, decode, encode

STATE_INTERVAL = 1.0  # seconds between the memory/queue reports the front's `status` shows


class Outbox:
    """The PUSH socket back to the front, shared by the main thread and the Worker thread (one at a time)."""

    def __init__(self, ctx, address: str, identity: bytes):
        self.socket = ctx.socket(zmq.PUSH)
        self.socket.setsockopt(zmq.SNDHWM, 0)  # results stream out; the front reads them as fast as they come
        self.socket.connect(address)
        self.identity = identity
        self._lock = threading.Lock()

    def post(self, kind: bytes, *frames) -> None:
        with self._lock:
            self.socket.send_multipart([kind, self.identity, *frames], copy=False)

    def post_json(self, kind: bytes, doc: dict) -> None:
        self.post(kind, json.dumps(doc).encode())

    def close(self) -> None:
        self.socket.close(linger=10000)  # what the worker said last reaches the front


def memory(device=None) -> dict:
    """This process's resident memory and, on a GPU `device`, what torch holds on it."""
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    out["rss_mb"] = round(int(line.split()[1]) / 1024, 1)
    except OSError:
        import resource

        out["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if device is not None and device.type == "cuda":
        import torch

        out["cuda_allocated_mb"] = round(torch.cuda.memory_allocated(device) / 2**20, 1)
        out["cuda_reserved_mb"] = round(torch.cuda.memory_reserved(device) / 2**20, 1)
    return out


def run(config: dict) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the front decides
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    logging.basicConfig(
        level=config["log_level"].upper(),
        stream=sys.stderr,
        format=f"%(asctime)s %(levelname)s [{config['device']} #{config['slot']}] %(message)s",
    )
    log = logging.getLogger("mattebridge.server")
    parent = os.getppid()
    ctx = zmq.Context()
    outbox = Outbox(ctx, config["replies"], config["identity"].encode())
    try:
        import torch

        from mattebridge.core.engine import catalog
        from mattebridge.core.engine.models import load_model

        from .access import Roots
        from .worker import Worker

        if config["threads"]:  # several workers on one CPU share its cores instead of each taking them all
            torch.set_num_threads(config["threads"])
        model = load_model(config["model"], device=config["device"], **config["model_options"])
        roots = Roots(config["roots"], server_folder=config["folder"])
    except MatteBridgeError as e:
        outbox.post(b"failed", str(e).encode())
        outbox.close()
        return 2

    def send(client: bytes, msg: Message) -> None:
        msg.session = config["session"]
        outbox.post(b"reply", client, *encode(msg))

    limits = config["limits"]
    worker = Worker(
        model,
        roots,
        send,
        max_jobs=limits["max_jobs"],
        max_objects=limits["max_objects"],
        max_frame_pixels=limits["max_frame_pixels"],
        feature_cache_mb=limits["feature_cache_mb"],
    )
    inbox = ctx.socket(zmq.DEALER)
    inbox.setsockopt(zmq.IDENTITY, outbox.identity)
    inbox.setsockopt(zmq.RCVHWM, 0)
    inbox.connect(config["requests"])
    worker.start()
    info = {
        "model": model.name,
        "checkpoint_sha256": model.sha256,
        "device": str(model.device),
        "image_size": model.image_size,
        "family": model.family,
        # what --model could load here (matting models refine edges; they do not track)
        "models": [r["name"] for r in catalog.listing() if r["present"] and r["engine"] != "matting"],
        "pid": os.getpid(),
        "state": {"queue": 0, "memory": memory(model.device)},  # the first report, as `status` shows it
    }
    # On the request socket itself: when the front reads it, it can route requests to this worker.
    inbox.send_multipart([b"ready", json.dumps(info).encode()])
    log.info("serving %s on %s (input %dpx), pid %d", model.name, model.device, model.image_size, os.getpid())
    last_state = 0.0
    try:
        while True:
            if inbox.poll(250):
                kind, *frames = inbox.recv_multipart(copy=False)
                kind = bytes(kind.buffer)
                if kind == b"stop":
                    break
                if kind == b"request":  # [client, clip id for open_clip, wire frames...]; checked by the front
                    client, clip_id = bytes(frames[0].buffer), bytes(frames[1].buffer).decode()
                    worker.submit(client, decode(frames[2:]), clip_id)
                elif kind == b"cancel":  # [client, job id or empty for all, why]
                    client, job, why = (bytes(f.buffer) for f in frames)
                    worker.cancel(client, job.decode() or None, why.decode())
                elif kind == b"forget":  # [client, why]: the client is gone
                    client, why = (bytes(f.buffer) for f in frames)
                    worker.cancel(client, None, why.decode())
                    worker.drop(client)
            if os.getppid() != parent:
                log.error("the server's front process is gone: stopping")
                break
            if time.monotonic() - last_state > STATE_INTERVAL:
                outbox.post_json(b"state", {"queue": worker.pending(), "memory": memory(model.device)})
                last_state = time.monotonic()
    finally:
        worker.stop()
        worker.join(timeout=120)
        inbox.close(linger=0)
        outbox.close()
        ctx.term()
    return 0


def main() -> int:
    return run(json.loads(sys.stdin.read()))


if __name__ == "__main__":
    sys.exit(main())
