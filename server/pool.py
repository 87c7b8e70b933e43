"""The model workers behind `mattebridge serve`: one process per device (server/device.py), each with its own copy
of the model, and where every clip, job and request lives among them.

A clip lives on one worker for its whole life (its engine state is there); a new clip goes to the least-loaded
ready worker. A worker that dies fails only its own requests, jobs and clips (`worker_lost`) and is started again;
the front keeps serving.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import zmq

from mattebridge.core.errors import MatteBridgeError
from mattebridge.core.wire.protocol import Message, ProtocolError, error_content

log = logging.getLogger("mattebridge.server")
LOST_CLIPS = 4096  # clips of dead workers remembered, to answer `worker_lost` rather than `unknown_clip`
RESTART_DELAYS = (1.0, 5.0, 30.0)  # after a worker that never became ready, before trying again


@dataclass
class Slot:
    """One device's worker: the process now running for it, and what the front knows of it."""

    index: int
    device: str
    process: Optional[subprocess.Popen] = None
    identity: bytes = b""
    generation: int = 0
    ready: bool = False
    info: dict = field(default_factory=dict)  # from the worker's ready message: model, device, pid
    state: dict = field(default_factory=dict)  # its latest report: queue, memory
    restarts: int = 0
    failures: int = 0  # starts in a row that ended before the worker was ready
    retry_at: float = 0.0
    error: str = ""  # why the last process ended


@dataclass
class Job:
    slot: int
    clip: str
    total: int
    done: int = 0
    started: float = field(default_factory=time.monotonic)


class WorkerPool:
    def __init__(self, ctx, devices: List[str], folder: str, worker_config: dict):
        self.slots = [Slot(i, d) for i, d in enumerate(devices)]
        self.folder, self.config = folder, worker_config
        cpus = sum(1 for d in devices if d == "cpu")
        self.threads = max(1, (os.cpu_count() or 1) // cpus) if cpus > 1 else 0
        self.requests = ctx.socket(zmq.ROUTER)  # to the workers; their ready messages come back on it
        self.requests.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a gone worker is an error here, not a silent drop
        self.requests.setsockopt(zmq.SNDHWM, 0)
        self.requests.bind(f"ipc://{folder}/requests")
        self.replies = ctx.socket(zmq.PULL)
        self.replies.setsockopt(zmq.RCVHWM, 0)
        self.replies.bind(f"ipc://{folder}/replies")
        self.clips: Dict[str, Tuple[int, bytes]] = {}  # clip id -> (slot, owner)
        self.lost: "OrderedDict[str, str]" = OrderedDict()  # clip id -> why it is gone
        self.jobs: Dict[Tuple[bytes, str], Job] = {}  # (client, propagate msg_id) -> job
        self.waiting: Dict[Tuple[bytes, str], Tuple[int, str, str]] = {}  # (client, msg_id) -> (slot, clip, type)
        self.frames_done = 0
        self._next_clip = 1
        self._stopping = False

    # --- processes ------------------------------------------------------------------------------
    def start(self) -> None:
        """Every worker, then wait until all are ready; one that fails to load its model fails the server."""
        for slot in self.slots:
            self._spawn(slot)
        poller = zmq.Poller()
        poller.register(self.requests, zmq.POLLIN)
        poller.register(self.replies, zmq.POLLIN)
        while not all(s.ready for s in self.slots):
            poller.poll(200)
            self.receive()
            for slot in self.slots:
                if not slot.ready and slot.process.poll() is not None:
                    self.replies.poll(1000)  # its last words, sent just before it ended
                    self.receive()
                    self.kill()
                    raise MatteBridgeError(
                        slot.error or f"the model worker for {slot.device} exited ({slot.process.returncode})"
                    )

    def _spawn(self, slot: Slot) -> None:
        slot.generation += 1
        slot.identity = f"{slot.index}.{slot.generation}".encode()
        slot.ready, slot.info, slot.state = False, {}, {}
        config = dict(
            self.config,
            slot=slot.index,
            device=slot.device,
            identity=slot.identity.decode(),
            threads=self.threads if slot.device == "cpu" else 0,
            folder=self.folder,
            requests=f"ipc://{self.folder}/requests",
            replies=f"ipc://{self.folder}/replies",
        )
        slot.process = subprocess.Popen(
            [sys.executable, "-m", "mattebridge.server.device"], stdin=subprocess.PIPE, close_fds=True
        )
        slot.process.stdin.write(json.dumps(config).encode())
        slot.process.stdin.close()

    def _slot_of(self, identity: bytes) -> Optional[Slot]:
        return next((s for s in self.slots if s.identity == identity), None)  # None: an earlier, dead process

    def receive(self) -> List[Tuple[bytes, list, Optional[str]]]:
        """Everything the workers have said: ready and state reports are kept; answers for clients are returned
        as (client, wire frames, parent msg_id) to send on."""
        out = []
        while True:
            try:
                frames = self.requests.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            slot = self._slot_of(frames[0])
            if slot is not None and frames[1] == b"ready":
                slot.ready, slot.info, slot.failures = True, json.loads(frames[2]), 0
                slot.state = slot.info.pop("state")
                log.info("model worker %d ready on %s, pid %d", slot.index, slot.info["device"], slot.info["pid"])
        while True:
            try:
                kind, identity, *frames = self.replies.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            slot = self._slot_of(bytes(identity.buffer))
            if slot is None:
                continue
            kind = bytes(kind.buffer)
            if kind == b"reply":
                client, wire = bytes(frames[0].buffer), frames[1:]
                out.append((client, wire, self._note_reply(slot, client, wire)))
            elif kind == b"state":
                slot.state = json.loads(bytes(frames[0].buffer))
            elif kind == b"failed":
                slot.error = bytes(frames[0].buffer).decode(errors="replace")
        return out

    def _note_reply(self, slot: Slot, client: bytes, wire) -> Optional[str]:
        """Follow clips and jobs through the answers that make or end them; returns the answer's parent id."""
        header = json.loads(bytes(wire[1].buffer))
        parent, kind = header.get("parent_id"), header["msg_type"]
        key = (client, parent)
        asked = self.waiting.pop(key, None)
        if asked is not None:
            _, clip, request = asked
            if (kind == "error" and request == "open_clip") or kind == "close_clip_reply":
                self.clips.pop(clip, None)  # a refused open_clip's id was never used
            elif kind == "propagate_started":
                total = json.loads(bytes(wire[2].buffer)).get("total", 0)
                self.jobs[key] = Job(slot.index, clip, total)
        elif key in self.jobs:
            if kind == "frame":
                self.jobs[key].done += 1
                self.frames_done += 1
            elif kind in ("propagate_done", "error"):
                del self.jobs[key]
        return parent

    def check(self) -> List[Tuple[bytes, Message]]:
        """Workers that died since the last look: their clips are lost, what was asked of them and their jobs
        fail with `worker_lost`, and they are started again. Returns the error answers to send."""
        out = []
        now = time.monotonic()
        for slot in self.slots:
            if self._stopping:
                break
            if slot.process is None:
                if now >= slot.retry_at:
                    self._spawn(slot)
                continue
            code = slot.process.poll()
            if code is None:
                continue
            how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
            why = f"the model worker on {slot.device} {how}"
            slot.error = f"{why}: {slot.error}" if slot.error else why  # `status` shows it after the restart
            log.error("%s; starting it again", slot.error)
            out += self._fail(slot, why)
            # One that dies after serving starts again at once; one that cannot even start waits longer each time.
            slot.failures = 0 if slot.ready else slot.failures + 1
            slot.process, slot.ready = None, False
            slot.restarts += 1
            slot.retry_at = now + (RESTART_DELAYS[min(slot.failures, len(RESTART_DELAYS)) - 1] if slot.failures else 0)
            if now >= slot.retry_at:
                self._spawn(slot)
        return out

    def _fail(self, slot: Slot, why: str) -> List[Tuple[bytes, Message]]:
        out = []
        for (client, msg_id), (index, _, _) in list(self.waiting.items()):
            if index == slot.index:
                del self.waiting[(client, msg_id)]
                out.append((client, _lost(msg_id, f"{why} before answering")))
        for (client, job_id), job in list(self.jobs.items()):
            if job.slot == slot.index:
                del self.jobs[(client, job_id)]
                out.append((client, _lost(job_id, f"{why} at frame {job.done + 1} of {job.total} of clip {job.clip}")))
        for clip, (index, _) in list(self.clips.items()):
            if index == slot.index:
                del self.clips[clip]
                self.lost[clip] = f"clip {clip}: {why}, and the clip with it; open the clip again"
        while len(self.lost) > LOST_CLIPS:
            self.lost.popitem(last=False)
        return out

    def stop(self) -> None:
        """Ask every worker to cancel its jobs and end; their last answers still come through `receive`."""
        self._stopping = True
        for slot in self.slots:
            if slot.process is not None and slot.process.poll() is None:
                self._tell(slot, [b"stop"])

    def running(self) -> bool:
        return any(s.process is not None and s.process.poll() is None for s in self.slots)

    def kill(self) -> None:
        for slot in self.slots:
            if slot.process is not None and slot.process.poll() is None:
                slot.process.kill()
                slot.process.wait(10)

    def _tell(self, slot: Slot, frames: list) -> bool:
        try:
            self.requests.send_multipart([slot.identity, *frames], copy=False)
            return True
        except zmq.ZMQError:  # the worker's process is gone; check() will find out
            return False

    # --- requests -------------------------------------------------------------------------------
    def forward(self, client: bytes, msg: Message, frames: list, max_clips: int) -> None:
        """Send a client's request (as it came: `frames`) to the worker that holds its clip, or for open_clip to
        the least-loaded ready worker under a new clip id. Refusals raise ProtocolError."""
        key = (client, msg.msg_id)
        if key in self.waiting or key in self.jobs:  # answers are matched to requests by id: one at a time
            what = "a propagation" if key in self.jobs else f"a {self.waiting[key][2]} request"
            raise ProtocolError(
                "bad_field",
                f"msg_id {msg.msg_id[:64]!r}: {what} of this client with that id is still waiting or running; "
                f"give each request an id of its own",
            )
        clip_id = ""
        if msg.msg_type == "open_clip":
            held = sum(1 for _, owner in self.clips.values() if owner == client)
            if held >= max_clips:
                raise ProtocolError(
                    "busy",
                    f"open_clip: this client holds {held} clips, the most one client may hold "
                    f"(the server's clip limit, --max-clips-per-client); close one first",
                    retry_after=5.0,
                )
            slot = self._least_loaded()
            clip_id, self._next_clip = str(self._next_clip), self._next_clip + 1
            self.clips[clip_id] = (slot.index, client)
        else:
            clip = msg.content.get("clip")
            if not isinstance(clip, str):
                raise ProtocolError("bad_field", "clip: expected the clip id open_clip answered")
            if clip in self.lost and clip not in self.clips:
                raise ProtocolError("worker_lost", self.lost[clip])
            where = self.clips.get(clip)
            if where is None or where[1] != client:
                raise ProtocolError("unknown_clip", f"clip {clip!r}: not open (closed, or opened by another client)")
            slot, clip_id = self.slots[where[0]], clip
        self.waiting[(client, msg.msg_id)] = (slot.index, clip_id, msg.msg_type)
        if not self._tell(slot, [b"request", client, clip_id.encode(), *frames]):
            del self.waiting[(client, msg.msg_id)]
            raise ProtocolError("worker_lost", f"the model worker on {slot.device} is not running; try again")

    def _least_loaded(self) -> Slot:
        ready = [s for s in self.slots if s.ready]
        if not ready:
            raise ProtocolError(
                "busy", "no model worker is ready (one is starting again after a failure)", retry_after=5.0
            )

        return min(ready, key=lambda slot: (*self._held(slot), slot.index))

    def _held(self, slot: Slot) -> Tuple[int, int]:
        """(running propagations, open clips) on `slot`'s worker: its load."""
        jobs = sum(1 for j in self.jobs.values() if j.slot == slot.index)
        return jobs, sum(1 for index, _ in self.clips.values() if index == slot.index)

    def pending(self) -> int:
        """Requests handed to the workers and not answered yet."""
        return len(self.waiting)

    def cancel(self, client: bytes, job: Optional[str], why: str) -> int:
        hits = [j.slot for key, j in self.jobs.items() if key[0] == client and (job is None or key[1] == job)]
        # A propagate not answered with propagate_started yet (queued, or just sent) is a job too: its worker
        # starts it cancelled. Otherwise a cancel sent right after the propagate would be lost.
        hits += [
            index
            for (who, msg_id), (index, _, kind) in self.waiting.items()
            if who == client and kind == "propagate" and (job is None or msg_id == job)
        ]
        for slot in set(hits):
            self._tell(self.slots[slot], [b"cancel", client, (job or "").encode(), why.encode()])
        return len(hits)

    def forget(self, client: bytes, why: str) -> None:
        """`client` is gone: every worker frees its jobs and clips (nobody reads their answers)."""
        for slot in self.slots:
            if slot.ready:
                self._tell(slot, [b"forget", client, why.encode()])
        for key in [k for k in self.waiting if k[0] == client]:
            del self.waiting[key]  # dropped unanswered; its jobs stay listed until their workers end them
        for clip in [c for c, (_, owner) in self.clips.items() if owner == client]:
            del self.clips[clip]

    # --- what hello and status show -------------------------------------------------------------
    def model_info(self) -> dict:
        return next((s.info for s in self.slots if s.ready), {})

    def describe(self) -> dict:
        now = time.monotonic()
        jobs = [
            {
                "job": job_id,
                "clip": j.clip,
                "done": j.done,
                "total": j.total,
                "seconds": round(now - j.started, 1),
                "worker": j.slot,
            }
            for (_, job_id), j in self.jobs.items()
        ]
        workers = [self._worker_status(s) for s in self.slots]
        return {
            "jobs": jobs,
            "clips": len(self.clips),
            "frames_done": self.frames_done,
            "workers": workers,
        }

    def _worker_status(self, s: Slot) -> dict:
        jobs, clips = self._held(s)
        return {
            "worker": s.index,
            "device": s.info.get("device", s.device),
            "state": "ready" if s.ready else "starting" if s.process is not None else "waiting to restart",
            "pid": s.info.get("pid") if s.ready else None,
            "clips": clips,
            "jobs": jobs,
            "queue": s.state.get("queue", 0),
            "memory": s.state.get("memory", {}),
            "restarts": s.restarts,
            "last_error": s.error,
        }


def _lost(msg_id: str, text: str) -> Message:
    return Message("error", error_content("worker_lost", text), parent_id=msg_id)
