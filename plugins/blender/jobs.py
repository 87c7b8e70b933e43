"""Talking to the server off Blender's main thread (no bpy here).

A :class:`BackgroundJob` runs one piece of network work -- server info, a preview matte, a track -- either in a worker
thread (the UI: Blender stays responsive and a ``bpy.app.timers`` callback drains :meth:`BackgroundJob.poll` on the main
thread, which is the only place Blender data is touched) or inline (``bpy.app.background``: scripts get the
result before the operator returns). The work functions only use :mod:`mattebridge.core.wire.client`.
"""

from __future__ import annotations

import ipaddress
import queue
import re
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

from mattebridge.core.errors import MatteBridgeError
from mattebridge.core.wire.vocabulary import DIRECTIONS


@dataclass(frozen=True)
class ClipSpec:
    """What the server opens: a frame pattern, a frame range and the plate's colour."""

    pattern: str
    frames: str  # FIRST-LAST
    colorspace: Optional[str] = None
    ocio: Optional[str] = None


@dataclass
class Event:
    kind: str  # progress | done | error | cancelled
    data: dict


class BackgroundJob:
    """One piece of work with progress, cancel and a result, handed to the main thread through a queue."""

    def __init__(self, label: str, work: Callable[["BackgroundJob"], object]):
        self.label = label
        self._work = work
        self._events: "queue.Queue[Event]" = queue.Queue()
        self._cancel = threading.Event()
        self._cancel_hooks: List[Callable[[], None]] = []
        self._lock = threading.Lock()
        self.thread: Optional[threading.Thread] = None
        self.state = "pending"  # pending | running | done | error | cancelled
        self.done = 0
        self.total = 0
        self.message = ""
        self.result = None
        self.started = None

    # --- worker side --------------------------------------------------------------------------
    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def on_cancel(self, hook: Callable[[], None]) -> None:
        """Call `hook` (from any thread) when the job is cancelled; at once if it already was."""
        with self._lock:
            self._cancel_hooks.append(hook)
            already = self._cancel.is_set()
        if already:
            hook()

    def progress(self, done: int, total: int, **data) -> None:
        self.done, self.total = done, total
        self._events.put(Event("progress", dict(data, done=done, total=total)))

    # --- main-thread side ---------------------------------------------------------------------
    def start(self) -> "BackgroundJob":
        self.state, self.started = "running", time.monotonic()
        self.thread = threading.Thread(target=self._run, name=f"mattebridge-{self.label}", daemon=True)
        self.thread.start()
        return self

    def run(self) -> "BackgroundJob":
        """Run inline, to completion (background mode)."""
        self.state, self.started = "running", time.monotonic()
        self._run()
        return self

    def cancel(self) -> None:
        with self._lock:
            self._cancel.set()
            hooks = list(self._cancel_hooks)
        for hook in hooks:
            try:
                hook()
            except Exception:  # a cancel hook must never take the UI down
                traceback.print_exc()

    def poll(self) -> List[Event]:
        out = []
        while True:
            try:
                out.append(self._events.get_nowait())
            except queue.Empty:
                return out

    @property
    def finished(self) -> bool:
        return self.state in ("done", "error", "cancelled")

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started if self.started is not None else 0.0

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0

    def _run(self) -> None:
        try:
            result = self._work(self)
        except MatteBridgeError as e:  # expected: the message is for the user, as is
            self.message, self.state = one_line(str(e)), "error"
            self._events.put(Event("error", {"message": self.message}))
            return
        except Exception as e:  # a bug: say so in one line, keep the traceback for the console
            traceback.print_exc(file=sys.stderr)
            self.message, self.state = one_line(f"unexpected {type(e).__name__}: {e}"), "error"
            self._events.put(Event("error", {"message": self.message}))
            return
        self.result = result
        self.state = "cancelled" if self.cancelled else "done"
        self._events.put(Event(self.state, {"result": result}))


def one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip() or "failed"


# --- connections ----------------------------------------------------------------------------------
def _client_class():
    from mattebridge.core.wire.client import Client

    return Client


class Connection:
    """A client per server address and the clips it has open, shared by quick requests (info, previews).

    Tracks use a client of their own, so a preview never waits behind a propagation on this side.
    """

    def __init__(self, address: str, timeout: float = 10.0, client_factory=None):
        self.address, self.timeout = address, timeout
        self._factory = client_factory or _client_class()
        self._client = None
        self._clips: Dict[ClipSpec, object] = {}
        self._lock = threading.RLock()

    def client(self):
        with self._lock:
            if self._client is None:
                self._client = self._factory(self.address, timeout=self.timeout)
            return self._client

    def clip(self, spec: ClipSpec):
        with self._lock:
            clip = self._clips.get(spec)
            if clip is None:
                clip = open_clip(self.client(), spec)
                self._clips[spec] = clip
            return clip

    @property
    def open_clips(self) -> Dict[ClipSpec, object]:
        with self._lock:
            return dict(self._clips)

    def forget(self) -> None:
        """Drop the client and clips (server restarted, or unreachable)."""
        with self._lock:
            client, self._client, self._clips = self._client, None, {}
        if client is not None:
            try:
                client.close()
            except Exception:
                pass

    def call(self, fn):
        """`fn(self)`, once more with a fresh client if the server restarted or the worker holding a clip ended
        (`serve --devices`): the clips are gone, so they are opened again."""
        from mattebridge.core.wire.client import ClipLost, ServerRestarted, ServerUnreachable

        try:
            return fn(self)
        except (ServerRestarted, ClipLost):
            self.forget()
            return fn(self)
        except ServerUnreachable:
            self.forget()
            raise


def open_clip(client, spec: ClipSpec):
    return client.open_clip(spec.pattern, spec.frames, colorspace=spec.colorspace, ocio=spec.ocio)


# --- the work -------------------------------------------------------------------------------------
def server_info(conn: Connection) -> dict:
    return conn.call(lambda c: c.client().hello())


@dataclass
class PreviewResult:
    frame: int
    obj: str
    alpha: object  # float32 (data h, data w)
    geometry: dict
    score: Optional[float] = None
    geometries: Dict[int, dict] = None  # every frame of the clip: frame -> geometry (for click mapping)


def preview(conn: Connection, spec: ClipSpec, frame: int, obj: str, points, box) -> Optional[PreviewResult]:
    """The matte of `obj` on `frame` for exactly these prompts; None (and the server's prompt cleared) when
    there are none."""

    def go(c: Connection):
        clip = c.clip(spec)
        if not points and box is None:
            clip.clear(frame, obj)
            return None
        matte = clip.prompt(frame, obj, points=[tuple(p) for p in points], box=None if box is None else list(box))
        scores = getattr(matte, "scores", None) or {}
        every = {f: clip.geometry(f) for f in range(int(clip.first), int(clip.last) + 1)}
        return PreviewResult(frame, obj, matte.alpha[obj], matte.geometry, scores.get(obj), every)

    return conn.call(go)


def geometry(conn: Connection, spec: ClipSpec, frame: int) -> dict:
    return conn.call(lambda c: c.clip(spec).geometry(frame))


@dataclass(frozen=True)
class TrackRequest:
    address: str
    spec: ClipSpec
    prompts: dict  # the prompts JSON (docs/prompts.md)
    out: str  # matte pattern with {object} and a #### frame token
    direction: str = "forward"
    timeout: float = 10.0
    edge: str = "soft"


def track(job: BackgroundJob, request: TrackRequest, client_factory=None) -> dict:
    """Propagate on the server, writing RGBA mattes; reports progress on `job`; honours `job.cancel()`."""
    factory = client_factory or _client_class()
    client = factory(request.address, timeout=request.timeout)
    try:
        clip = open_clip(client, request.spec)
        run = clip.propagate(
            direction=request.direction,
            out=request.out,
            buffers=False,
            layout="files",
            channels="RGBA",
            edge=request.edge,
            prompts=request.prompts,
        )
        job.on_cancel(run.cancel)
        for result in run:
            job.progress(result.done, result.total, frame=result.frame, paths=dict(result.paths or {}))
        summary = dict(run.summary or {})
        try:
            clip.close()
        except MatteBridgeError:
            pass
        return summary
    finally:
        client.close()


def is_local(address: str) -> bool:
    """Loopback TCP or IPC: the server runs on this machine."""
    m = re.fullmatch(r"tcp://(\[[^\]]+\]|[^:/]+)(?::\d+)?/?", address.strip())
    if m is None:
        return address.startswith(("ipc://", "inproc://"))
    host = m.group(1).strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost
        return False


def check_online_access(address: str, online_access: bool) -> None:
    """Blender's "Allow Online Access" off: only a server on this machine may be reached."""
    if not online_access and not is_local(address):
        raise MatteBridgeError(
            f"server {address} is not on this machine and Blender's Online Access is off "
            "(Preferences > System > Network)"
        )


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "unnamed"


def matte_name_pattern(scene_name: str, strip_name: str, frame_digits: int) -> str:
    """`<scene>/<strip>/{object}.####.exr`: one folder per source strip (strip names are unique per scene
    only), one file per object and frame."""
    return f"{safe_name(scene_name)}/{safe_name(strip_name)}/{{object}}.{'#' * max(1, frame_digits)}.exr"


def parse_direction(direction: str) -> str:
    d = direction.lower()
    if d not in DIRECTIONS:
        raise MatteBridgeError(f"direction {direction!r}: expected FORWARD, BACKWARD or BOTH")
    return d


def time_text(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def overlay_rgba(
    alpha, color: Tuple[float, float, float] = (1.0, 0.35, 0.1), opacity: float = 0.5, max_side: int = 2048
):
    """The matte as a tinted RGBA float32 texture, rows bottom-up (GPU order), at most `max_side` wide/high."""
    import numpy as np

    a = np.asarray(alpha, dtype=np.float32)
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"matte must be a 2-D array, got shape {a.shape}")
    step = max(1, -(-max(a.shape) // max_side))
    a = np.clip(a[::step, ::step], 0.0, 1.0)[::-1]
    out = np.empty(a.shape + (4,), np.float32)
    out[..., 0], out[..., 1], out[..., 2] = color
    out[..., 3] = a * opacity
    return np.ascontiguousarray(out)
