"""Preview and Track as background jobs: network off the main thread, the host touched only through `Host`.

Nothing here imports `nuke`. The Nuke side (nukehost.py) gathers a `JobRequest` from the node on the
main thread and gives a `Host` whose `call` / `post` run functions on Nuke's main thread
(`nuke.executeInMainThreadWithResult` / `nuke.executeInMainThread`) and whose `progress` is a
`nuke.ProgressTask`. The tests drive the same jobs with a plain Python host against a real server.
"""

import os
import shutil
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from . import coords
from . import prompts as prompt_records
from .cache import open_cache
from .exr import write_exr
from .keys import KeyContext

RENDER_CHUNK = 8  # frames rendered per main-thread call: the UI breathes between chunks
REFRESH_EVERY = 1.0  # seconds between refreshes of the node's output while tracking


class JobError(Exception):
    """An expected failure, said in one line to the user."""


@dataclass
class Source:
    """Where the server reads the node's input frames."""

    description: str  # for messages: "Read1's files" or "the node's input, rendered"
    stamps: Dict[int, str]  # frame -> identity of its pixels (keys.py)
    pattern: Optional[str] = None  # files the server reads (%04d or ####); None: render first
    colorspace: Optional[str] = None
    ocio: Optional[str] = None
    render: Optional[Callable[[str, int, int], None]] = None  # (pattern, first, last), on the main thread
    fallback: Optional["Source"] = None  # when the server may not read `pattern` (outside its roots)


@dataclass
class JobRequest:
    node: str  # the node's name, for titles and messages
    address: str
    settings: Dict[str, object]  # matte settings sent with each request: {"edge": "soft"}
    image_format: Tuple[int, int, float]  # full-size width, height, pixel aspect of the node's input
    prompts: Dict[str, Dict[int, dict]]  # prompts.canonical(...)
    first: int
    last: int
    cache_root: str
    source: Source
    expected_model: str = ""  # "" = whatever the server runs
    timeout: float = 10.0
    input_bbox: Optional[Tuple[int, int, int, int]] = None  # Preview: Nuke's bbox of the input on that frame


@dataclass
class Outcome:
    status: str  # done | up to date | cancelled | failed
    message: str
    published: List[Tuple[str, int]] = field(default_factory=list)


class Host:
    """What a job needs from its host. This default runs everything in the calling thread (scripts, tests)."""

    def call(self, fn, *args):
        """Run fn on the host's main thread and wait for its result."""
        return fn(*args)

    def post(self, fn, *args) -> None:
        """Run fn on the host's main thread, later; do not wait."""
        fn(*args)

    def progress(self, title: str):
        return _Progress()


class _Progress:
    def setMessage(self, text):  # noqa: N802 (the host's spelling)
        pass

    def setProgress(self, percent):  # noqa: N802
        pass

    def isCancelled(self):  # noqa: N802
        return False


def _on_main(host: Host, fn, *args):
    """host.call, with fn's exception brought back to this thread (hosts differ in what they do with it)."""

    def guarded():
        try:
            return True, fn(*args)
        except Exception as e:  # noqa: BLE001 - handed back as it is
            return False, e

    ok, value = host.call(guarded)
    if not ok:
        raise value
    return value


class BackgroundJob:
    """One Preview (action "preview", with `frame`) or Track (action forward | backward | both)."""

    def __init__(
        self,
        request: JobRequest,
        host: Host,
        action: str,
        frame: Optional[int] = None,
        on_done: Optional[Callable[[Outcome], None]] = None,
        on_progress: Optional[Callable[[], None]] = None,
    ):
        if action not in ("preview", "forward", "backward", "both"):
            raise ValueError(f"action {action!r}")
        self.request, self.host, self.action, self.frame = request, host, action, frame
        self.on_done, self.on_progress = on_done, on_progress
        self._cancel = threading.Event()
        self._run = None
        self.thread: Optional[threading.Thread] = None
        self.outcome: Optional[Outcome] = None

    # --- control (any thread) --------------------------------------------------------------------------
    def start(self) -> "BackgroundJob":
        self.thread = threading.Thread(target=self.run, name=f"mattebridge-{self.action}", daemon=True)
        self.thread.start()
        return self

    def cancel(self) -> None:
        """Ask the job to stop (any thread, never blocks): it stops rendering, or tells the server to stop
        the pass, at its next step. Mattes already made are kept."""
        self._cancel.set()

    def wait(self, timeout: Optional[float] = None) -> Optional[Outcome]:
        if self.thread is not None:
            self.thread.join(timeout)
        return self.outcome

    @property
    def title(self) -> str:
        what = {
            "preview": "preview",
            "forward": "track \u25b6",
            "backward": "track \u25c0",
            "both": "track \u25c0\u25b6",
        }
        return f"MatteBridge {self.request.node}: {what[self.action]}"

    # --- the work (background thread) --------------------------------------------------------------------
    def run(self) -> Outcome:
        from mattebridge.core.errors import MatteBridgeError

        task = self.host.progress(self.title)
        self._task = task
        temp = tempfile.mkdtemp(prefix="mattebridge-nuke-", dir=os.environ.get("MATTEBRIDGE_TMPDIR") or None)
        try:
            outcome = self._work(task, temp)
        except (JobError, prompt_records.PromptError, MatteBridgeError) as e:
            outcome = Outcome("failed", str(e))
        except OSError as e:
            outcome = Outcome("failed", f"{e.filename or 'file'}: {e.strerror or e}")
        except Exception as e:  # noqa: BLE001 - a bug: say so, keep the traceback for the console
            traceback.print_exc(file=sys.stderr)
            outcome = Outcome("failed", f"unexpected error ({type(e).__name__}: {e}); details in the console")
        finally:
            shutil.rmtree(temp, ignore_errors=True)  # rendered input and staged mattes
            self._task = None
            del task  # the host's progress bar goes with it
        self.outcome = outcome
        if self.on_done is not None:
            self.host.post(self.on_done, outcome)
        return outcome

    def _cancelled(self, task) -> bool:
        return self._cancel.is_set() or bool(task.isCancelled())

    def _work(self, task, temp: str) -> Outcome:
        from mattebridge.core.wire.client import Client

        req = self.request
        if not req.prompts:
            raise JobError("no prompts yet: add a point or a box on the object, in the Viewer")
        task.setMessage(f"connecting to {req.address}")
        with Client(req.address, timeout=req.timeout) as client:
            model = client.info
            if req.expected_model and model.get("model") != req.expected_model:
                raise JobError(
                    f"the server at {req.address} runs {model.get('model')}, the node asks for "
                    f"{req.expected_model}: start the server with that model, or clear the node's model"
                )
            ctx = KeyContext(
                {k: model.get(k) for k in ("model", "checkpoint_sha256", "image_size")},
                req.settings,
                req.image_format,
                req.prompts,
                req.source.stamps,
                req.first,
                req.last,
            )
            for obj, frame in ctx.outside()[:1]:
                raise JobError(f"{obj}: a prompt on frame {frame} is outside the frame range {req.first}-{req.last}")
            width, height, _ = req.image_format
            prompt_records.check_on_image(req.prompts, width, height)
            cache = open_cache(req.cache_root)
            cache.update(ctx)
            if self.action == "preview":
                return self._preview(client, ctx, cache, task, temp)
            return self._track(client, ctx, cache, task, temp)

    # --- input frames ------------------------------------------------------------------------------------
    def _open(self, client, source: Source, first: int, last: int, task, temp: str, share: float):
        """Render if needed, open the clip on the server, check its geometry against the node's format."""
        from mattebridge.core.wire.client import ServerError

        pattern = source.pattern
        if pattern is None:
            pattern = os.path.join(temp, "input.%04d.exr")
            for a in range(first, last + 1, RENDER_CHUNK):
                if self._cancelled(task):
                    return None
                b = min(a + RENDER_CHUNK - 1, last)
                task.setMessage(f"rendering the input, frames {a}-{b}")
                _on_main(self.host, source.render, pattern, a, b)
                task.setProgress(int(share * 100 * (b - first + 1) / (last - first + 1)))
        task.setMessage("opening the frames on the server")
        try:
            clip = client.open_clip(pattern, (first, last), colorspace=source.colorspace, ocio=source.ocio)
        except ServerError as e:
            if e.code == "forbidden_path" and source.fallback is not None:
                return self._open(client, source.fallback, first, last, task, temp, share)
            raise
        geometry = clip.geometry(first)
        w, h = geometry["display"][2], geometry["display"][3]
        fw, fh, aspect = self.request.image_format
        if (w, h) != (fw, fh) or abs(float(geometry.get("pixel_aspect", 1.0)) - aspect) > 1e-4:
            clip.close()
            raise JobError(
                f"the node's input is {fw}x{fh} (pixel aspect {aspect:g}) but the frames from "
                f"{source.description} are {w}x{h} (pixel aspect {geometry.get('pixel_aspect', 1.0):g}) "
                f"on frame {first}"
            )
        if self.request.input_bbox is not None and first == last:
            seen = coords.data_window_to_bbox(geometry["data"], geometry["display"])
            if not coords.bboxes_agree(seen, self.request.input_bbox):
                clip.close()
                raise JobError(
                    f"on frame {first} the node's input has the bbox {_box(self.request.input_bbox)} but "
                    f"the frames from {source.description} have {_box(seen)}: the mattes would not line up"
                )
        return clip

    # --- Preview: the current frame, at once --------------------------------------------------------------
    def _preview(self, client, ctx: KeyContext, cache, task, temp: str) -> Outcome:
        frame = self.frame
        if not ctx.first <= frame <= ctx.last:
            raise JobError(f"frame {frame} is outside the node's frame range {ctx.first}-{ctx.last}")
        objects = [o for o, per in ctx.prompts.items() if frame in per]
        if not objects:
            raise JobError(f"no prompts on frame {frame}: drag a point or the box of an object here first")
        wanted = {
            o: {frame: ("preview", ctx.key(o, frame, "preview"))} for o in objects if cache.entry(o, frame) is None
        }
        todo = cache.missing(wanted)
        if not todo:
            return Outcome("up to date", f"frame {frame} is up to date")
        clip = self._open(client, self.request.source, frame, frame, task, temp, 0.3)
        if clip is None:
            return Outcome("cancelled", "cancelled")
        published = []
        try:
            geometry = clip.geometry(frame)
            height = geometry["display"][3]
            for obj in todo:
                if self._cancelled(task):
                    return Outcome("cancelled", "cancelled", published)
                task.setMessage(f"{obj}: frame {frame}")
                fp = prompt_records.frame_to_wire(ctx.prompts[obj][frame], height)
                points = [(p["x"], p["y"], p["positive"]) for p in fp.get("points", [])]
                matte = clip.prompt(frame, obj, points=points, box=fp.get("box"), edge=str(ctx.settings["edge"]))
                path = os.path.join(temp, f"{obj}.{frame}.exr")
                write_exr(
                    path,
                    {"A": matte.alpha[obj]},
                    matte.geometry["display"],
                    matte.geometry["data"],
                    matte.geometry.get("pixel_aspect", 1.0),
                    attributes={
                        "mattebridge/object": obj,
                        "mattebridge/kind": "preview",
                        "mattebridge/model": str(ctx.model.get("model")),
                        "mattebridge/edge": str(ctx.settings["edge"]),
                        "mattebridge/prompts": _json(
                            {"version": 1, "objects": [{"name": obj, "frames": [dict(frame=frame, **fp)]}]}
                        ),
                    },
                )
                if cache.publish(obj, frame, "preview", todo[obj][frame][1], path):
                    published.append((obj, frame))
                task.setProgress(30 + int(70 * len(published) / len(todo)))
        finally:
            clip.close()
            cache.save()
        return Outcome("done", f"previewed {', '.join(o for o, _ in published)} on frame {frame}", published)

    # --- Track: a pass in one direction or both ----------------------------------------------------------
    def _track(self, client, ctx: KeyContext, cache, task, temp: str) -> Outcome:
        direction = self.action
        todo = cache.missing(ctx.targets(direction))
        if not todo:
            cache.save()
            return Outcome("up to date", "every matte of this pass is up to date")
        first, last = ctx.span(direction)
        share = 0.2 if self.request.source.pattern is None else 0.0
        clip = self._open(client, self.request.source, first, last, task, temp, share)
        if clip is None:
            return Outcome("cancelled", "cancelled")
        published: List[Tuple[str, int]] = []
        staging = os.path.join(temp, "mattes")
        try:
            wire = prompt_records.to_wire(ctx.prompts, clip.geometry(first)["display"][3])
            cache.save_prompts(wire)
            task.setMessage(f"tracking {first}-{last}")
            self._run = clip.propagate(
                direction=direction,
                out=os.path.join(staging, "{object}.####.exr"),
                prompts=wire,
                edge=str(ctx.settings["edge"]),
                force=True,
            )
            last_refresh, cancel_sent = time.monotonic(), False
            for result in self._run:
                for obj, path in result.paths.items():
                    target = todo.get(obj, {}).get(result.frame)
                    if target is None:  # up to date already, or not a matte of this pass
                        if os.path.exists(path):
                            os.unlink(path)
                    elif cache.publish(obj, result.frame, target[0], target[1], path):
                        published.append((obj, result.frame))
                total = result.total or (last - first + 1)
                task.setProgress(int(100 * (share + (1 - share) * result.done / total)))
                task.setMessage(f"frame {result.frame} ({result.done}/{total})")
                if self._cancelled(task) and not cancel_sent:  # Cancel on the progress bar or the node
                    self._cancel.set()
                    self._run.cancel()  # the server ends the pass; the loop ends with its summary
                    cancel_sent = True
                if self.on_progress is not None and time.monotonic() - last_refresh > REFRESH_EVERY:
                    self.host.post(self.on_progress)
                    last_refresh = time.monotonic()
            summary = self._run.summary or {}
        finally:
            self._run = None
            cache.save()
            try:
                clip.close()
            except Exception:  # noqa: BLE001 - the clip goes with the server's client timeout anyway
                pass
        if summary.get("cancelled") or self._cancel.is_set():
            return Outcome("cancelled", f"cancelled; {len(published)} mattes kept", published)
        return Outcome("done", f"tracked {first}-{last}: {len(published)} mattes", published)


def _box(b) -> str:
    return "%d,%d - %d,%d" % tuple(b)


def _json(doc) -> str:
    import json

    return json.dumps(doc, separators=(",", ":"))
