"""The model worker thread of one device's process (server/device.py): interactive requests first,
propagations a frame at a time, clients in turn.

A click never waits for a whole shot: between any two propagation frames the worker takes the next
waiting request. Requests are taken from clients in rotation, and running propagations advance in
rotation too, so one busy host cannot starve another.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import threading
import time
import traceback
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Callable, Deque, Dict, List, Optional, Sequence, Tuple

import numpy as np

from mattebridge.core.errors import MatteBridgeError
from mattebridge.core.image.half import to_half
from mattebridge.core.track.run import TrackRun
from mattebridge.core.wire.protocol import (
    Message,
    ProtocolError,
    error_content,
    field_of,
    one_line,
    pack_array,
    unpack_array,
)
from mattebridge.core.wire.shm import read_shared_rgb, shared_layout, to_rgb32
from mattebridge.core.wire.vocabulary import EDGE_MODES

from .access import Roots
from .clips import (
    FeatureCache,
    ServerClip,
    file_error,
    finite_scores,
    geometry_from_content,
    job_from_content,
    open_clip,
    prompt_from_content,
)
from .limits import FEATURE_CACHE_MB, MAX_FRAME_PIXELS, MAX_OBJECTS

log = logging.getLogger("mattebridge.server")
SHUTDOWN = "the server is shutting down"  # the cancelled jobs' reason; clients recognise it (core/wire/client.py)


@dataclass
class PropagationJob:
    client: bytes
    msg_id: str
    clip: ServerClip
    run: TrackRun
    total: int
    buffers: bool
    cancelled: str = ""  # why, once cancelled
    started: float = field(default_factory=time.monotonic)

    @property
    def done(self) -> int:
        return self.run.stats.frames_written + self.run.stats.frames_skipped


class Worker(threading.Thread):
    def __init__(
        self,
        model,
        roots: Roots,
        send: Callable[[bytes, Message], None],
        max_jobs: int = 8,
        max_objects: int = MAX_OBJECTS,
        max_frame_pixels: int = MAX_FRAME_PIXELS,
        feature_cache_mb: int = FEATURE_CACHE_MB,
    ):
        super().__init__(name="mattebridge-model", daemon=True)
        self.model, self.roots, self.send, self.max_jobs = model, roots, send, max_jobs
        self.max_objects, self.max_frame_pixels = max_objects, max_frame_pixels
        self.features = FeatureCache(feature_cache_mb << 20)  # clicked frames' image features, every clip's
        self._cond = threading.Condition()
        self._requests: "OrderedDict[bytes, Deque[Tuple[Message, str]]]" = OrderedDict()  # (request, clip id)
        # Clients gone (goodbye, silence) whose jobs and clips are still to be freed. Kept apart from the
        # requests: they are not counted against --max-queue and are freed in one batch before the next request.
        self._drops: "OrderedDict[bytes, None]" = OrderedDict()
        self._jobs: List[PropagationJob] = []
        # Propagates cancelled before they became jobs (queued, or being started): (client, msg_id) -> why.
        # They start cancelled, so their clients still get propagate_started, then propagate_done `cancelled`.
        self._cancels: Dict[Tuple[bytes, str], str] = {}
        self._current: Optional[Tuple[bytes, Message]] = None  # the request the worker thread is handling
        self._clips: Dict[str, ServerClip] = {}
        self._stopping = False

    # --- called from the socket thread ------------------------------------------------------------
    def submit(self, client: bytes, msg: Message, clip_id: str = "") -> None:
        """`clip_id`: for open_clip, the id the front chose (unique across every device's worker)."""
        with self._cond:
            self._requests.setdefault(client, deque()).append((msg, clip_id))
            self._cond.notify()

    def drop(self, client: bytes) -> None:
        """`client` is gone: its waiting requests are discarded (nobody reads their replies), and its jobs
        and clips freed before the worker takes another request."""
        with self._cond:
            self._requests.pop(client, None)
            for key in [k for k in self._cancels if k[0] == client]:
                del self._cancels[key]
            self._drops[client] = None
            self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return sum(len(q) for q in self._requests.values())

    def cancel(self, client: bytes, job_id: Optional[str], why: str = "cancelled by the client") -> int:
        """Mark `client`'s job (or all its jobs) cancelled; the worker stops it before its next frame. A
        propagate not started yet (queued, or being started now) starts cancelled."""
        with self._cond:
            hits = [j for j in self._jobs if j.client == client and (job_id is None or j.msg_id == job_id)]
            for job in hits:
                job.cancelled = job.cancelled or why
            waiting = [m for m, _ in self._requests.get(client, ())]
            if self._current is not None and self._current[0] == client:
                waiting.append(self._current[1])
            for msg in waiting:
                if msg.msg_type == "propagate" and (job_id is None or msg.msg_id == job_id):
                    self._cancels.setdefault((client, msg.msg_id), why)
            self._cond.notify()
            return len(hits)

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()

    # --- the worker thread ------------------------------------------------------------------------
    def run(self) -> None:
        turn = 0
        while True:
            with self._cond:
                while not self._stopping and not self._requests and not self._jobs and not self._drops:
                    self._cond.wait(0.5)
                if self._stopping:
                    break
                gone, self._drops = list(self._drops), OrderedDict()
                item = None if gone else self._next_request()
            if gone:  # before any later request of theirs (a reaped client may come back)
                self._drop(gone)
            elif item is not None:
                self._handle(*item)
                with self._cond:  # a refused propagate's cancel is forgotten with it
                    self._current = None
                    self._cancels.pop((item[0], item[1].msg_id), None)
            elif self._jobs:
                turn = (turn + 1) % len(self._jobs)
                self._step(self._jobs[turn])
        for job in list(self._jobs):
            job.cancelled = job.cancelled or SHUTDOWN
            self._step(job)
        for clip in list(self._clips.values()):
            clip.close()
        self._clips.clear()

    def _next_request(self):
        """The oldest request of the next client in rotation."""
        if not self._requests:
            return None
        client, queue = next(iter(self._requests.items()))
        msg, clip_id = queue.popleft()
        del self._requests[client]
        if queue:
            self._requests[client] = queue  # to the back of the rotation
        self._current = (client, msg)
        return client, msg, clip_id

    def _reply(self, client: bytes, msg: Message, msg_type: str, content: dict, buffers=None) -> None:
        self.send(client, Message(msg_type, content, buffers or [], parent_id=msg.msg_id))

    def _error(self, client: bytes, msg: Message, e: ProtocolError) -> None:
        log.warning("%s %s -> %s: %s", client.hex()[:8], msg.msg_type, e.code, one_line(e))
        self._reply(client, msg, "error", error_content(e.code, str(e), **e.extra))

    def _handle(self, client: bytes, msg: Message, clip_id: str) -> None:
        try:
            if msg.msg_type == "open_clip":
                self._on_open_clip(client, msg, clip_id)
            else:
                getattr(self, "_on_" + msg.msg_type)(client, msg)
        except ProtocolError as e:
            self._error(client, msg, e)
        except MatteBridgeError as e:
            self._error(client, msg, file_error(e))
        except Exception as e:  # a bug: keep serving, report it, log the traceback
            log.error("%s %s failed:\n%s", client.hex()[:8], msg.msg_type, traceback.format_exc())
            self._error(client, msg, ProtocolError("internal", f"{type(e).__name__}: {e}"))

    def _clip(self, client: bytes, content: dict, idle: bool = True) -> ServerClip:
        clip_id = field_of(content, "clip", str)
        clip = self._clips.get(clip_id)
        if clip is None or clip.owner != client:
            raise ProtocolError("unknown_clip", f"clip {clip_id!r}: not open (closed, or opened by another client)")
        if idle and clip.job is not None:
            raise ProtocolError("clip_busy", f"clip {clip_id}: a propagation is running on it (cancel it first)")
        return clip

    def _check_frame_size(self, shape: Sequence[int], name: str) -> None:
        """Refuse a frame over --max-frame-pixels before anything of its size is allocated."""
        h, w = shape[:2]
        if w * h > self.max_frame_pixels:
            raise ProtocolError(
                "too_large",
                f"{name}: {w}x{h} is {w * h} pixels, more than this server's frame "
                f"limit of {self.max_frame_pixels} pixels (--max-frame-pixels)",
            )

    def _check_display_size(self, geometry, name: str) -> None:
        """The display window too: the model's view of a frame is allocated at its size (plate.to_display)."""
        self._check_frame_size((geometry.display[3], geometry.display[2]), name)

    def _on_open_clip(self, client: bytes, msg: Message, clip_id: str) -> None:
        def check_geometry(frame, geometry):  # files: each header, before any frame's pixels are read
            self._check_frame_size((geometry.data[3], geometry.data[2]), f"pattern: frame {frame}'s data window")
            self._check_display_size(geometry, f"pattern: frame {frame}'s display window")

        clip = open_clip(clip_id, client, msg.content, self.roots, check_geometry, self.features)
        self._clips[clip.id] = clip
        self._reply(client, msg, "open_clip_reply", clip.describe())

    def _on_put_frame(self, client: bytes, msg: Message) -> None:
        clip = self._clip(client, msg.content)
        if clip.inline is None:
            raise ProtocolError(
                "bad_field", f"clip {clip.id}: reads its frames from files; put_frame is for inline clips"
            )
        frame = field_of(msg.content, "frame", int)
        if frame not in clip.frames:
            raise ProtocolError("bad_field", f"frame {frame}: outside the clip's range {clip.frames}")
        # Every check on the description first (nothing of the frame's size is allocated before), then the one
        # copy the server keeps: float32 RGB, filled straight from the message or the client's segment.
        shm = msg.content.get("shm")
        if shm is not None:
            layout = shared_layout(shm)
            name, dtype, shape = "shm", np.dtype(layout.dtype), layout.shape
        else:
            pixels = unpack_array(msg.content.get("pixels"), msg.buffers, "pixels")  # a view of the message
            name, dtype, shape = "pixels", pixels.dtype, pixels.shape
        if dtype.kind != "f":
            raise ProtocolError("bad_buffer", f"frame {frame}: inline pixels must be float16 or float32")
        self._check_frame_size(shape, name)
        geometry = geometry_from_content(msg.content, shape)
        self._check_display_size(geometry, "geometry.display")
        h, w = shape[:2]
        if (geometry.data[2], geometry.data[3]) != (w, h):
            raise ProtocolError(
                "bad_buffer",
                f"frame {frame}: pixels are {w}x{h} but the data window is {geometry.data[2]}x{geometry.data[3]}",
            )
        if shm is not None:
            rgb, stamp = read_shared_rgb(layout)
        else:  # the same stamp as by shared memory: a hash of the bytes as sent
            rgb, stamp = to_rgb32(pixels), hashlib.sha1(np.ascontiguousarray(pixels).data).hexdigest()
        clip.put_frame(frame, rgb, geometry, stamp)
        self._reply(client, msg, "put_frame_reply", {"clip": clip.id, "frame": frame})

    def _on_prompt(self, client: bytes, msg: Message) -> None:
        clip = self._clip(client, msg.content)
        index = clip.frame_index(msg.content)
        frame = clip.frames.first + index
        obj = field_of(msg.content, "object", str)
        edge = field_of(msg.content, "edge", str, "soft")
        if edge not in EDGE_MODES:
            raise ProtocolError("bad_field", f"edge: {edge!r} (expected one of {', '.join(EDGE_MODES)})")
        if obj not in clip.prompts.objects and len(clip.prompts.objects) >= self.max_objects:
            raise ProtocolError(
                "bad_field",
                f"object {obj!r}: clip {clip.id} already has {len(clip.prompts.objects)} "
                f"objects, the most one clip may have (the server's object limit, "
                f"--max-objects); clear one first",
            )
        fp = prompt_from_content(clip, frame, msg.content, msg.buffers)
        try:
            clip.prompts.on(obj, frame)
        except MatteBridgeError as e:
            clip.drop_mask_file(fp)
            raise ProtocolError("bad_field", f"object: {e}") from None
        previous = clip.prompts.objects[obj].get(frame)
        if previous is not None and not previous.points and previous.box is None and previous.mask is None:
            previous = None  # the empty entry `on` just made
        clip.prompts.objects[obj][frame] = fp  # the full set for this object and frame: a repeat is harmless
        try:
            alpha, geometry, score, iou = clip.preview(self.model, index, obj, fp, edge)
            buffers: list = []
            desc = pack_array(to_half(alpha), buffers)
            self._reply(
                client,
                msg,
                "prompt_reply",
                {
                    "clip": clip.id,
                    "frame": frame,
                    "object": obj,
                    "alpha": desc,
                    "geometry": geometry.to_json(),
                    "score": score,
                    "iou": iou,
                },
                buffers,
            )
        except BaseException:  # refused: the clip's prompts stay exactly as they were
            if clip.prompts.objects.get(obj, {}).get(frame) is fp:
                if previous is not None:
                    clip.prompts.objects[obj][frame] = previous
                else:
                    clip.prompts.remove(obj, frame)
            clip.drop_mask_file(fp)
            raise
        if previous is not fp and (previous is None or previous.mask != fp.mask):
            clip.drop_mask_file(previous)  # the prompt it replaced: its mask file is no longer referred to

    def _on_clear(self, client: bytes, msg: Message) -> None:
        clip = self._clip(client, msg.content)
        frame = field_of(msg.content, "frame", int, None)
        obj = field_of(msg.content, "object", str, None)
        clip.prompts.remove(obj, frame)
        self._reply(client, msg, "clear_reply", {"clip": clip.id, "prompts": clip.prompts.to_json()})

    def _on_prompts(self, client: bytes, msg: Message) -> None:
        clip = self._clip(client, msg.content, idle=False)
        self._reply(client, msg, "prompts_reply", {"clip": clip.id, "prompts": clip.prompts.to_json()})

    def _on_propagate(self, client: bytes, msg: Message) -> None:
        clip = self._clip(client, msg.content)
        if len(self._jobs) >= self.max_jobs:
            raise ProtocolError(
                "busy", f"{len(self._jobs)} propagations are running (the most this server runs)", retry_after=5.0
            )
        job = job_from_content(clip, msg.content, self.roots)
        if len(job.prompts.objects) > self.max_objects:
            raise ProtocolError(
                "bad_field",
                f"prompts: {len(job.prompts.objects)} objects, more than the "
                f"{self.max_objects} one propagation may track (the server's object "
                f"limit, --max-objects)",
            )
        buffers = field_of(msg.content, "buffers", bool, False)
        run = clip.start_job(self.model, job, buffers)
        clip.prompts = job.prompts  # only now: a refused propagation leaves the clip's prompts as they were
        started = PropagationJob(client, msg.msg_id, clip, run, len(clip.frames), buffers)
        with self._cond:
            started.cancelled = self._cancels.pop((client, msg.msg_id), "")
            self._jobs.append(started)
        self._reply(
            client,
            msg,
            "propagate_started",
            {"clip": clip.id, "job": msg.msg_id, "total": len(clip.frames), "prompts": job.prompts.to_json()},
        )
        if started.cancelled:  # cancelled before it started: it ends now, before any frame
            self._step(started)

    def _on_close_clip(self, client: bytes, msg: Message) -> None:
        clip = self._clip(client, msg.content, idle=False)
        self._finish_jobs(lambda j: j.clip is clip, "the clip was closed")
        clip.close()
        del self._clips[clip.id]
        self._reply(client, msg, "close_clip_reply", {"clip": clip.id})

    def _drop(self, clients: List[bytes]) -> None:
        """Clients that closed, disconnected or stopped heartbeating: cancel their jobs, free their clips.
        Cheap for clients that held nothing (a crowd of idle peers timing out must not stall live ones):
        the garbage collection and CUDA cache release run once per batch, and only if clips were freed."""
        freed = 0
        for client in clients:
            jobs = self._finish_jobs(lambda j: j.client == client, "the client went away")
            clips = [c for c in self._clips.values() if c.owner == client]
            for clip in clips:
                clip.close()
                del self._clips[clip.id]
            freed += len(clips)
            if jobs or clips:
                log.info("%s gone: %d job(s) cancelled, %d clip(s) freed", client.hex()[:8], jobs, len(clips))
        if freed:
            gc.collect()  # model state and frames sit in reference cycles
            if self.model.device.type == "cuda":
                import torch

                torch.cuda.empty_cache()
        log.debug("%d client(s) forgotten", len(clients))

    def _finish_jobs(self, which, why: str) -> int:
        hits = [j for j in self._jobs if which(j)]
        for job in hits:
            job.cancelled = job.cancelled or why
            self._step(job)
        return len(hits)

    # --- propagation ----------------------------------------------------------------------------
    def _step(self, job: PropagationJob) -> None:
        """One frame of a propagation, or its end."""
        msg = Message("propagate", parent_id=None, msg_id=job.msg_id)
        try:
            if job.cancelled:
                job.run.close()
                self._end(job, "cancelled", job.cancelled)
                return
            outcome = next(job.run)
        except StopIteration:
            self._end(job, "done")
            return
        except ProtocolError as e:
            self._end(job, "error")
            self._error(job.client, msg, e)
            return
        except MatteBridgeError as e:
            self._end(job, "error")
            self._error(job.client, msg, file_error(e))
            return
        except Exception as e:
            log.error("propagation %s failed:\n%s", job.msg_id, traceback.format_exc())
            self._end(job, "error")
            self._error(job.client, msg, ProtocolError("internal", f"{type(e).__name__}: {e}"))
            return
        buffers: list = []
        content = {
            "clip": job.clip.id,
            "job": job.msg_id,
            "frame": outcome.frame,
            "done": job.done,
            "total": job.total,
            "skipped": outcome.skipped,
            "paths": outcome.paths,
            "scores": finite_scores(outcome.scores),  # NaN/Infinity become null: JSON cannot carry them
            "ious": finite_scores(outcome.ious),
        }
        try:
            if job.buffers:
                geometry = job.clip.prepared.geometry[outcome.frame]
                content["geometry"] = geometry.to_json()
                content["alpha"] = {o: pack_array(to_half(a), buffers) for o, a in outcome.mattes.items()}
            self.send(job.client, Message("frame", content, buffers, parent_id=job.msg_id))
        except Exception as e:  # a frame that cannot be sent (encode refuses it) ends the job with one line
            log.error("propagation %s failed:\n%s", job.msg_id, traceback.format_exc())
            job.run.close()
            self._end(job, "error")
            error = e if isinstance(e, ProtocolError) else ProtocolError("internal", f"{type(e).__name__}: {e}")
            self._error(job.client, msg, error)

    def _end(self, job: PropagationJob, status: str, reason: str = "") -> None:
        with self._cond:
            if job in self._jobs:
                self._jobs.remove(job)
        if job.clip.job is job.run:
            job.clip.job = None
        stats = job.run.stats
        if status != "error":
            content = {
                "clip": job.clip.id,
                "job": job.msg_id,
                "status": status,
                "reason": reason,
                "frames_written": stats.frames_written,
                "frames_skipped": stats.frames_skipped,
                "seconds": {k: round(v, 3) for k, v in stats.seconds.items()},
            }
            self.send(job.client, Message("propagate_done", content, parent_id=job.msg_id))
        log.info(
            "%s propagation %s %s%s: %d written, %d skipped in %.1fs",
            job.client.hex()[:8],
            job.msg_id[:8],
            status,
            f" ({reason})" if reason else "",
            stats.frames_written,
            stats.frames_skipped,
            time.monotonic() - job.started,
        )
