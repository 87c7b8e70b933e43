"""The run: a job on a prepared clip and a loaded model, frame by frame (resume, passes, corrections)."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import threading
import time
from typing import Callable, List, Optional

from mattebridge.core import __version__
from mattebridge.core.engine.matting_model import DEFAULT_MATTE_MODEL, load_matting_model
from mattebridge.core.paths import UNCONFINED, InputSet, PathPolicy
from mattebridge.core.track.clip import PreparedClip, SharedReads, engine_prompts, prepare_clip
from mattebridge.core.track.job import TrackJob, TrackStats, check_job, smooths
from mattebridge.core.track.outputs import (
    OutputFiles,
    check_outputs,
    remove_stale_temps,
)
from mattebridge.core.track.post import FrameLogits, FrameOutcome, MattePost, WriterPool, default_writers
from mattebridge.core.wire.prompts import Prompts
from mattebridge.core.wire.sequence import FrameRange, frame_path

AHEAD = 4  # frames the feed decodes ahead of the model


def plan_passes(prompts: Prompts, frames: FrameRange, direction: str):
    """[(start, stop, reverse, first prompts, corrections)] in clip indices.

    Each object's first prompt in a pass's order starts it off; its later prompts are corrections,
    applied when the pass reaches their frame (they stay in force from there on).
    """
    forward = direction != "backward"
    firsts, later = {}, {}
    for obj, per in prompts.objects.items():
        order = sorted(per, reverse=not forward)
        firsts[obj] = order[0]
        for f in order[1:]:
            later.setdefault(f - frames.first, []).append(obj)
    start = (min if forward else max)(firsts.values()) - frames.first
    passes = [(start, len(frames) - 1 if forward else 0, not forward)]
    if direction == "both":
        passes.append((start, 0, True))
    return firsts, later, passes


def run_track(
    job: TrackJob,
    progress: Optional[Callable[[int, int, int], None]] = None,
    log: Callable[[str], None] = lambda s: None,
    compile: bool = False,
) -> TrackStats:
    from mattebridge.core.engine.models import load_model

    check_job(job)
    clip = prepare_clip(job.plate, job.frames, layer=job.layer, colorspace=job.colorspace, ocio=job.ocio, view=job.view)
    job.prompts.check(job.frames, lambda frame: clip.geometry[frame].display_size)
    inputs = check_outputs(job, clip)  # before the model loads: a bad --out fails at once, not after a minute
    matting = load_matting(job, None) if job.edge == "matte" else None  # a missing matting model: before the tracker
    model = load_model(
        job.model,
        checkpoint=job.checkpoint,
        config=job.model_config,
        image_size=job.image_size,
        device=job.device,
        compile=compile,
    )
    log(
        f"model {model.name} on {model.device}{' (compiled)' if compile else ''}, "
        f"input {model.image_size}px; "
        f"colour {clip.transform.colorspace} -> {clip.transform.display}/{clip.transform.view}"
    )
    if matting is not None:
        matting.model.to(model.device)
        matting.device = model.device
    run = TrackRun(job, clip, model, inputs=inputs, matting=matting)
    for outcome in run:
        if progress:
            progress(run.stats.frames_written + run.stats.frames_skipped, len(job.frames), outcome.frame)
    return run.stats


class TrackRun:
    """One job on a prepared clip and a loaded model, as an iterator of per-frame outcomes.

    Stepping it frame by frame is what lets the server take interactive work between frames; closing
    it early (cancel) leaves only complete files. Frames already written by the same job (same plate,
    prompts, model and settings: the EXR header says) are not rewritten unless `job.force`; a pass
    stops early once the rest of it is on disk and no later pass needs its memory.

    Mattes are encoded by `writers` threads behind the model (post.WriterPool): the model runs ahead by at
    most twice that many frames, outcomes come out in the order the model made them, and a frame's write
    error stops the run when that frame's turn comes.
    """

    def __init__(
        self,
        job: TrackJob,
        clip: PreparedClip,
        model,
        keep_mattes: bool = False,
        paths: PathPolicy = UNCONFINED,
        inputs: Optional[InputSet] = None,
        writers: Optional[int] = None,
        matting=None,
    ):
        self.job, self.clip, self.model, self.keep_mattes, self.paths = job, clip, model, keep_mattes, paths
        self.writers = writers or default_writers()
        self._lock = threading.Lock()  # writers add to stats.seconds
        self.stats = TrackStats()
        files = OutputFiles(paths, inputs or check_outputs(job, clip, paths))
        if job.edge == "matte" and matting is None:
            matting = load_matting(job, model.device)
        self.matting = matting if job.edge == "matte" else None
        self.key = job_key(job, clip, model, self.matting)
        self.post = MattePost(
            job,
            grid=model.mask_size,
            clip=clip,
            device=refine_device(model.device),
            files=files,
            metadata={
                "version": __version__,
                "model": model.name,
                "checkpointSHA256": model.sha256,
                "prompts": job.prompts.to_json(),
                "edge": job.edge,
                "plate": clip.source,
                "layer": job.layer or "",
                "jobKey": self.key,
                **clip.transform.describe(),
                **({"matteModel": self.matting.name, "matteModelSHA256": self.matting.sha256} if self.matting else {}),
            },
            matting=self.matting,
        )
        self._steps = self._run()

    def __iter__(self):
        return self

    def __next__(self) -> FrameOutcome:
        return next(self._steps)

    def close(self) -> None:
        self._steps.close()

    def outputs(self, frame: int) -> List[str]:
        """The frame's output files, resolved and checked."""
        job = self.job
        paths = list(self.post.paths(frame).values()) if job.out else []
        extra = [(job.cutout, "cutout"), (job.foreground, "foreground")]
        return paths + [self.post.files.path(frame_path(p, frame), name) for p, name in extra if p]

    def _done(self, frame: int) -> bool:
        from mattebridge.core.image.matte_io import read_metadata

        outputs = self.outputs(frame)
        if self.job.force or not self.job.out:  # a frame is reused from its mattes: cut-outs alone recompute
            return False
        stamp = self.clip.stamp(frame)
        for path in outputs:
            meta = read_metadata(path) if os.path.exists(path) else {}
            if meta.get("jobKey") != self.key or meta.get("plateStamp") != stamp:
                return False
        return True

    def _written(self, step: FrameLogits) -> FrameOutcome:
        return self._timed(self.post.encode, step, self.keep_mattes)

    def _reused(self, frame: int) -> FrameOutcome:
        return self._timed(self.post.reuse, frame, self.keep_mattes)

    def _timed(self, step, *args) -> FrameOutcome:
        """A writer thread's work on one frame, its time added to the run's "write" seconds."""
        t0 = time.perf_counter()
        outcome = step(*args)
        with self._lock:
            self.stats.seconds["write"] += time.perf_counter() - t0
        return outcome

    def _taken(self, writers: WriterPool) -> FrameOutcome:
        outcome = writers.take()
        if outcome.skipped:
            self.stats.frames_skipped += 1
        else:
            self.stats.frames_written += 1
        return outcome

    def _run(self):
        from mattebridge.core.engine.feed import ModelFeed

        job, frames = self.job, self.job.frames
        remove_stale_temps([p for f in frames for p in self.outputs(f)])
        done = {i for i, f in enumerate(frames) if self._done(f)}
        firsts, later, passes = plan_passes(job.prompts, frames, job.direction)
        handled = set()
        writers = WriterPool(self.writers)

        def finish(index, result):
            """The frame to the writers: what must follow frame order (temporal state) happens here."""
            frame = frames.first + index
            if index in done:
                self.post.observe(frame, result)  # keeps temporal smoothing exact; the file is already there
                writers.submit(self._reused, frame)
            else:
                writers.submit(self._written, self.post.logits(frame, result))
            handled.add(index)

        feed = tracker = None
        heavy = job.edge in ("soft", "matte") or bool(job.cutout or job.foreground)  # the post works on the plate
        try:
            if len(done) == len(frames):  # everything is on disk: no model work at all
                for index in range(len(frames)):
                    finish(index, None)
                    while writers.ready():
                        yield self._taken(writers)
            else:
                per_frame = engine_prompts(job.prompts, self.clip.geometry, self.paths)
                read = self.clip.read
                if heavy:  # the post needs the plate too
                    # frames between the feed's read and the post's take: the feed's read-ahead, the frame the
                    # model is on, the writers' queue and the frame being handed to them
                    shared = SharedReads(self.clip.read, AHEAD + 1 + writers.depth + 1)
                    read, self.post.read_plate = shared.read, shared.take
                feed = ModelFeed(
                    list(frames),
                    read,
                    self.model.image_size,
                    self.clip.transform,
                    ahead=AHEAD,
                    device=self.model.device,
                )
                tracker = self.model.tracker(feed, len(frames))
                t0 = time.perf_counter()
                for obj, frame in firsts.items():  # each object's starting prompt, before any tracking
                    for o, prompt in per_frame[frame]:
                        if o == obj:
                            tracker.add_prompt(frame - frames.first, obj, prompt)
                corrections = {
                    i: [(o, p) for o, p in per_frame[i + frames.first] if o in objs] for i, objs in later.items()
                }
                for n, (start, stop, reverse) in enumerate(passes):
                    later_passes_done = all(done.issuperset(_span(s, e)) for s, e, _ in passes[n + 1 :])
                    if later_passes_done and done.issuperset(_span(start, stop)):
                        continue
                    self.post.new_pass()
                    for result in tracker.propagate(start, stop, reverse, corrections):
                        self.stats.seconds["engine"] += time.perf_counter() - t0
                        if result.index not in handled:
                            finish(result.index, result)
                            while writers.ready():
                                yield self._taken(writers)
                        # the rest of this pass is on disk, and later passes no longer reach back here
                        rest = _span(result.index + (-1 if reverse else 1), stop) if result.index != stop else set()
                        if done.issuperset(rest) and (later_passes_done or abs(result.index - start) >= tracker.reach):
                            break
                        t0 = time.perf_counter()
                    t0 = time.perf_counter()
                for index in range(len(frames)):  # frames no pass reached (before a forward start, ...)
                    if index not in handled:
                        finish(index, None)
                        while writers.ready():
                            yield self._taken(writers)
            while len(writers):
                yield self._taken(writers)
            self.post.finish()
        finally:
            writers.close()  # a run closed early waits for the frames being written: complete files only
            self.post.read_plate = self.clip.read  # the plates still shared are freed with the run's end
            if tracker is not None:
                tracker.close()
            if feed is not None:
                feed.close()
                self.stats.seconds["read"] = feed.seconds["read"]
                self.stats.seconds["colour"] = feed.seconds["colour"]


def refine_device(device):
    """Where soft edges are refined: the model's CUDA device when it has one, else numpy on the CPU."""
    return device if getattr(device, "type", None) == "cuda" else None


def _span(a: int, b: int) -> set:
    return set(range(min(a, b), max(a, b) + 1))


def load_matting(job: TrackJob, device):
    """`--edge matte`'s model on the tracker's device: job.matte_model is a folder, a catalogue name, or None.
    The last one loaded is kept: a server's propagations reuse it instead of loading it for every job."""
    name = job.matte_model or DEFAULT_MATTE_MODEL
    return _matting_model(name, os.path.isdir(name), str(device) if device is not None else None)


@functools.lru_cache(maxsize=1)
def _matting_model(name: str, is_folder: bool, device: Optional[str]):
    return load_matting_model(name, name if is_folder else None, device)


def job_key(job: TrackJob, clip: PreparedClip, model, matting=None) -> str:
    """What produced a matte, hashed: a file with the same key (and plate stamp) need not be redone."""
    doc = {
        "version": __version__,
        "plate": clip.source,
        "frames": str(job.frames),
        "layer": job.layer,
        "prompts": job.prompts.to_json(),
        "model": model.name,
        "sha256": model.sha256,
        "imageSize": model.image_size,
        "direction": job.direction,
        "edge": job.edge,
        "fillHoles": job.fill_holes,
        "stabilize": smooths(job),
        "layout": job.layout,
        "channels": job.channels,
        "cutout": bool(job.cutout),
        "colour": clip.transform.describe(),
    }
    if job.foreground:
        doc["foreground"] = True
    if matting is not None:  # only then: keys of other edge modes stay what they were (their files resume)
        doc.update(matteModel=matting.sha256, matteTile=job.matte_tile)
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32]
