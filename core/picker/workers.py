"""Background work for the window, so the GUI thread never waits on the server or the disk.

- ServerWorker: one thread owns the `mattebridge.core.wire.client` Client and its clip; prompt requests are
  coalesced per (frame, object) (only the latest state of a key is sent), propagation streams progress.
- PlateLoader: reads and colour-converts the frame the window wants (the latest request wins), then
  prefetches its neighbours for scrubbing.
Results reach the GUI through Qt signals (queued across threads). Both threads are daemons: a hung
server can never keep the window from closing.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from typing import Callable, Dict, Optional

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage

from mattebridge.core.errors import MatteBridgeError
from mattebridge.core.image.plate import Geometry
from mattebridge.core.wire.sequence import FrameRange, frame_path

from .plates import PlateSource, alpha_preview, preview_shape

TRACKED_PREVIEW = 1024  # tracked mattes are kept at most this size (memory stays small on long shots)
BUSY_RETRIES = 20


def one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def matte_paths(out: str, frames, objects) -> Dict[str, list]:
    """Matte files of a track on disk, per object, in frame order."""
    found = {}
    for obj in objects:
        paths = [frame_path(out.replace("{object}", obj), f) for f in frames]
        found[obj] = [p for p in dict.fromkeys(paths) if os.path.exists(p)]
    return found


class ServerWorker(QObject):
    connected = Signal(object)  # {"info": hello, "clip": {...}}
    connectFailed = Signal(str)
    matteReady = Signal(int, str, int, object)  # frame, object, revision, uint8 preview (None: cleared)
    promptFailed = Signal(int, str, int, str)  # frame, object, revision, message
    trackProgress = Signal(object)  # {"frame", "done", "total", "previews": {obj: uint8}, "skipped"}
    trackFinished = Signal(object)  # {"cancelled", "error", "summary", "paths": {obj: [...]}}
    lost = Signal(str)  # the server restarted or forgot the clip: connect again (and send every prompt)
    error = Signal(str)  # anything else that went wrong on the worker thread

    def __init__(
        self,
        address: str,
        timeout: float,
        clip_args: dict,
        geometry_of: Callable[[int], Geometry],
        preview_size: int,
        edge: str,
    ):
        super().__init__()
        self.address, self.timeout, self.clip_args = address, timeout, clip_args
        self.geometry_of, self.preview_size, self.edge = geometry_of, preview_size, edge
        self.client = None
        self.clip = None
        self._jobs: "queue.Queue" = queue.Queue()
        self._pending: Dict[tuple, tuple] = {}
        self._lock = threading.Lock()
        self._run = None
        self._cancel = threading.Event()
        self.tracking = False
        self._thread = threading.Thread(target=self._loop, name="mattebridge-picker-server", daemon=True)
        self._thread.start()

    # --- called from the GUI thread ----------------------------------------------------------------
    def connect_server(self) -> None:
        self._jobs.put(self._connect)

    def request(self, frame: int, obj: str, revision: int, prompt: Optional[dict]) -> None:
        """Send this object's prompt on this frame (None: clear it). Only the latest per key is sent."""
        with self._lock:
            self._pending[(frame, obj)] = (revision, prompt)
        self._jobs.put(self._drain)

    def track(self, request: dict) -> None:
        self._cancel.clear()
        self.tracking = True
        self._jobs.put(lambda: self._track(request))

    def cancel(self) -> None:
        self._cancel.set()
        run = self._run
        if run is not None:
            run.cancel()

    def stop(self, wait: float = 5.0) -> None:
        self.cancel()
        self._jobs.put(self._close)
        self._jobs.put(None)
        self._thread.join(wait)

    # --- the worker thread --------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                job()
            except Exception as e:  # never let the thread die: the window reports it
                self.error.emit(f"{type(e).__name__}: {one_line(e)}")

    def _connect(self) -> None:
        from mattebridge.core.wire.client import Client

        self._close()
        try:
            client = Client(self.address, timeout=self.timeout)
        except Exception as e:
            self.connectFailed.emit(self._unreachable(e))
            return
        try:
            info = client.info
            clip = client.open_clip(**self.clip_args)
        except Exception as e:
            client.close()
            self.connectFailed.emit(self._unreachable(e))
            return
        self.client, self.clip = client, clip
        self.connected.emit(
            {
                "info": info,
                "clip": {
                    "first": clip.first,
                    "last": clip.last,
                    "colorspace": getattr(clip, "colorspace", None),
                    "display": getattr(clip, "display", None),
                    "view": getattr(clip, "view", None),
                },
            }
        )

    def _unreachable(self, error: Exception) -> str:
        from mattebridge.core.wire.client import ServerUnreachable

        if isinstance(error, ServerUnreachable):
            return (
                f"the mattebridge server at {self.address} is not running or not answering "
                f"(start it with `mattebridge serve`): {one_line(error)}"
            )
        return f"the mattebridge server at {self.address}: {one_line(error)}"

    def _close(self) -> None:
        clip, client, self.clip, self.client = self.clip, self.client, None, None
        for thing in (clip, client):
            if thing is not None:
                try:
                    thing.close()
                except Exception:
                    pass

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._pending:
                    return
                key = next(iter(self._pending))
                revision, prompt = self._pending.pop(key)
            self._send(key[0], key[1], revision, prompt)

    def _send(self, frame: int, obj: str, revision: int, prompt: Optional[dict]) -> None:
        from mattebridge.core.wire.client import Busy, ClipLost, ServerError, ServerRestarted

        if self.clip is None:
            self.promptFailed.emit(frame, obj, revision, "not connected to the server")
            return
        for _ in range(BUSY_RETRIES):
            try:
                if prompt is None:
                    self.clip.clear(frame, obj)
                    self.matteReady.emit(frame, obj, revision, None)
                    return
                matte = self.clip.prompt(frame, obj, edge=self.edge, **prompt)
                geometry = Geometry.from_json(matte.geometry)
                shape = preview_shape(geometry, self.preview_size)
                self.matteReady.emit(frame, obj, revision, alpha_preview(matte.alpha[obj], geometry, shape))
                return
            except Busy as e:
                time.sleep(min(max(e.retry_after, 0.05), 2.0))
            except (ServerRestarted, ClipLost) as e:  # the clip is gone: reconnect, send every prompt again
                self._lose(one_line(e))
                return
            except ServerError as e:
                if e.code == "unknown_clip":
                    self._lose(one_line(e))
                else:
                    self.promptFailed.emit(frame, obj, revision, one_line(e))
                return
            except Exception as e:
                self.promptFailed.emit(frame, obj, revision, one_line(e))
                return
        self.promptFailed.emit(frame, obj, revision, "the server stayed busy")

    def _lose(self, message: str) -> None:
        with self._lock:
            self._pending.clear()  # the window sends every prompt again once connected
        self._close()
        self.lost.emit(message)

    def _track(self, request: dict) -> None:
        frames = FrameRange.parse(self.clip_args["frames"])
        objects = [o["name"] for o in request["prompts"]["objects"] if o.get("frames")]
        outcome = {"cancelled": False, "error": None, "summary": {}, "paths": {}}
        try:
            if self.clip is None:
                raise MatteBridgeError("not connected to the server")
            if self._cancel.is_set():
                outcome["cancelled"] = True
                return
            self._run = self.clip.propagate(
                direction=request["direction"],
                out=request["out"],
                buffers=True,
                layout="files",
                channels=request["channels"],
                edge=self.edge,
                prompts=request["prompts"],
                force=request.get("force", False),
            )
            if self._cancel.is_set():
                self._run.cancel()
            for result in self._run:
                previews = {}
                alpha = getattr(result, "alpha", None) or {}
                if alpha:
                    geometry = (
                        Geometry.from_json(result.geometry)
                        if getattr(result, "geometry", None)
                        else self.geometry_of(result.frame)
                    )
                    shape = preview_shape(geometry, min(self.preview_size, TRACKED_PREVIEW))
                    previews = {obj: alpha_preview(a, geometry, shape) for obj, a in alpha.items()}
                self.trackProgress.emit(
                    {
                        "frame": result.frame,
                        "done": result.done,
                        "total": result.total,
                        "previews": previews,
                        "skipped": bool(getattr(result, "skipped", False)),
                    }
                )
            summary = dict(getattr(self._run, "summary", None) or {})
            outcome["summary"] = summary
            outcome["cancelled"] = bool(summary.get("cancelled")) or self._cancel.is_set()
        except Exception as e:
            outcome["error"] = one_line(e)
        finally:
            self._run = None
            self.tracking = False
            if request.get("out"):
                outcome["paths"] = matte_paths(request["out"], frames, objects)
            self.trackFinished.emit(outcome)


def to_qimage(rgb) -> QImage:
    h, w = rgb.shape[:2]
    return QImage(rgb.tobytes(), w, h, 3 * w, QImage.Format_RGB888).copy()


class PlateLoader(QObject):
    loaded = Signal(int, object, object)  # frame, QImage, Geometry
    failed = Signal(int, str)

    def __init__(self, source: PlateSource):
        super().__init__()
        self.source = source
        self._cond = threading.Condition()
        self._want: Optional[int] = None
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="mattebridge-picker-plates", daemon=True)
        self._thread.start()

    def request(self, frame: int) -> None:
        with self._cond:
            self._want = frame
            self._cond.notify()

    def stop(self, wait: float = 2.0) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(wait)

    def _next(self) -> Optional[int]:
        with self._cond:
            while self._want is None and not self._stop:
                self._cond.wait()
            if self._stop:
                return None
            frame, self._want = self._want, None
            return frame

    def _loop(self) -> None:
        while True:
            frame = self._next()
            if frame is None:
                return
            try:
                shown = self.source.preview(frame)
                self.loaded.emit(frame, to_qimage(shown.rgb), shown.geometry)
            except MatteBridgeError as e:
                self.failed.emit(frame, str(e))
                continue
            except Exception as e:
                self.failed.emit(frame, f"{type(e).__name__}: {one_line(e)}")
                continue
            for near in (frame + 1, frame - 1):  # scrubbing with the arrow keys stays fluid
                with self._cond:
                    if self._want is not None or self._stop:
                        break
                if near in self.source.frames:
                    try:
                        self.source.preview(near)
                    except Exception:
                        pass
