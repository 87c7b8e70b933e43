"""Matte post: logits -> mattes on disk (stabilise, fill holes, edge mode, layout, QC, cut-outs), encoded on a
bounded pool of writer threads behind the model."""

from __future__ import annotations

import json
import os
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional

import numpy as np

from mattebridge.core.image.half import as_half
from mattebridge.core.image.matte_io import write_matte
from mattebridge.core.image.plate import (
    Geometry,
)
from mattebridge.core.matte.alpha import alpha_from_logits
from mattebridge.core.track.clip import PreparedClip
from mattebridge.core.track.job import TrackJob, smooths
from mattebridge.core.track.outputs import OutputFiles, matte_paths, report_paths
from mattebridge.core.wire.sequence import frame_path


@dataclass
class FrameOutcome:
    frame: int
    paths: Dict[str, str]  # object (or "*" for one file holding every object) -> matte file
    mattes: Optional[Dict[str, np.ndarray]] = None  # object -> alpha over the data window, when kept
    scores: Dict[str, float] = field(default_factory=dict)
    ious: Dict[str, float] = field(default_factory=dict)
    skipped: bool = False  # already on disk from the same job (resumed)


@dataclass
class FrameLogits:
    """A frame between the two steps of the post: its logits after smoothing and hole filling."""

    frame: int
    tracked: bool  # a pass reached the frame (untracked frames get empty mattes)
    logits: Dict[str, Optional[np.ndarray]]  # object -> (L, L) logits, None where the model gave none
    scores: Dict[str, float]
    ious: Dict[str, float]
    alphas: Optional[Dict[str, np.ndarray]] = None  # edge matte: the mattes, made and smoothed in frame order
    plate: Optional[object] = None  # the plate read for them (encode reuses it)


class MattePost:
    """Logits -> mattes on disk: stabilise, fill holes, edge mode, layout, QC and cut-outs."""

    def __init__(
        self,
        job: TrackJob,
        grid: int,
        clip: PreparedClip,
        device,
        files: OutputFiles,
        metadata: Dict[str, object],
        matting=None,
    ):
        from mattebridge.core.matte.confidence import QCReport
        from mattebridge.core.matte.temporal import TemporalSmoother

        self.job, self.grid, self.clip, self.device, self.metadata = job, grid, clip, device, metadata
        self.files = files
        self.smoothers = {o: TemporalSmoother(logits=True, radius=1) for o in job.prompts.objects}
        self.report = QCReport() if job.report else None
        # edge matte: the matting model (engine.matting_model.MattingModel); each object's logits on the frame
        # before (the trimap's motion widening); full-resolution smoothing after the matting pass
        self.matting, self.tiles_run = matting, 0  # tiles the matting model saw, over the run
        self._previous: Dict[str, np.ndarray] = {}
        self.alpha_smoothers: Dict[str, object] = {}
        self._report_lock = threading.Lock()  # writers record QC from their threads
        self.read_plate = clip.read  # frame -> plate; TrackRun's SharedReads.take reuses the feed's decode

    def new_pass(self) -> None:
        for smoother in self.smoothers.values():
            smoother.reset()
        self._previous.clear()
        self.alpha_smoothers.clear()

    def paths(self, frame: int) -> Dict[str, str]:
        """The frame's matte files, resolved and checked as they are about to be opened."""
        return {key: self.files.path(p, "out") for key, p in matte_paths(self.job, frame).items()}

    def _logits(self, obj: str, result, geometry: Geometry) -> Optional[np.ndarray]:
        from mattebridge.core.matte.holes import fill_holes_logits

        if result is None or obj not in result.logits:
            return None
        logits = result.logits[obj]
        if smooths(self.job):
            logits = self.smoothers[obj](logits)
        if self.job.fill_holes:
            w, h = geometry.display_size
            cells = int(self.job.fill_holes * self.grid * self.grid / (w * h))
            if cells > 0:
                logits = fill_holes_logits(logits, cells)
        return logits

    def observe(self, frame: int, result) -> None:
        """A frame computed but not written (resumed): only the temporal state moves on."""
        if result is not None and smooths(self.job):
            for obj in self.job.prompts.objects:
                if obj in result.logits:
                    self.smoothers[obj](result.logits[obj])
        # edge matte: the full-resolution smoothing is not replayed for a frame already on disk; it restarts
        self._previous.clear()
        self.alpha_smoothers.clear()

    def reuse(self, frame: int, keep_mattes: bool = False) -> "FrameOutcome":
        """A frame already on disk: its outcome (QC record, mattes when kept) from the files."""
        from mattebridge.core.image.matte_io import read_channels, read_metadata

        paths = self.paths(frame)
        first = read_metadata(next(iter(paths.values())))
        scores = {o: float(v) for o, v in json.loads(first.get("objectScores", "{}")).items()}
        ious = {o: float(v) for o, v in json.loads(first.get("objectIoUs", "{}")).items()}
        mattes = {}
        if self.report is not None or keep_mattes:
            geometry = self.clip.geometry[frame]
            for obj in self.job.prompts.objects:
                path = paths.get(obj) or paths["*"]
                mattes[obj] = read_channels(path, ["A" if obj in paths else f"{obj}.A"])[..., 0]
                self._record(frame, obj, scores.get(obj), mattes[obj], geometry, ious.get(obj))
        return FrameOutcome(frame, paths, mattes if keep_mattes else None, scores, ious, skipped=True)

    def _record(self, frame: int, obj: str, score: Optional[float], alpha: np.ndarray, geometry: Geometry, iou) -> None:
        """QC of one matte; the report is keyed by (object, frame), so the order writers finish in is irrelevant."""
        if self.report is not None:
            with self._report_lock:
                self.report.add(frame, obj, score, alpha, geometry.data[:2], iou)

    def write(self, frame: int, result, keep_mattes: bool = False) -> "FrameOutcome":
        """Both steps on this thread: `logits` (in frame order) then `encode`."""
        return self.encode(self.logits(frame, result), keep_mattes)

    def logits(self, frame: int, result) -> "FrameLogits":
        """The step that must run in frame order, on the model's thread: smoothing over time, hole filling."""
        logits, scores, ious = {}, {}, {}
        for obj in self.job.prompts.objects:
            logits[obj] = self._logits(obj, result, self.clip.geometry[frame])
            if logits[obj] is not None:
                scores[obj] = round(result.scores[obj], 4)
                if result.ious and obj in result.ious:
                    ious[obj] = round(result.ious[obj], 4)
        step = FrameLogits(frame, result is not None, logits, scores, ious)
        if self.job.edge == "matte" and any(v is not None for v in logits.values()):
            self._matte(step)
        return step

    def _matte(self, step: "FrameLogits") -> None:
        """Edge matte, in frame order: the matting pass on each object's band, then temporal smoothing of the
        full-resolution alpha (still edges calmed, moving ones passed through: core/matte/temporal.py)."""
        from mattebridge.core.matte.alpha import matted_alpha
        from mattebridge.core.matte.temporal import TemporalSmoother
        from mattebridge.core.matte.trimap import cell_pixels

        geometry = self.clip.geometry[step.frame]
        step.plate, step.alphas = self.read_plate(step.frame), {}
        for obj, logits in step.logits.items():
            if logits is None:
                self._previous.pop(obj, None)
                continue
            alpha, stats = matted_alpha(
                logits,
                geometry,
                step.plate.pixels,
                self.clip.transform.apply,
                self.matting.predict,
                self._previous.get(obj),
                self.job.matte_tile,
                self.matting.device,
            )
            self._previous[obj] = logits
            self.tiles_run += stats.run
            if smooths(self.job):
                radius = round(1.5 * cell_pixels(geometry.display_size, logits.shape[0]))
                alpha = self.alpha_smoothers.setdefault(obj, TemporalSmoother(radius=radius))(alpha)
            step.alphas[obj] = alpha

    def encode(self, step: "FrameLogits", keep_mattes: bool = False) -> "FrameOutcome":
        """Logits -> the frame's files (edge against the plate, QC, EXRs); safe on any thread, any order."""
        from mattebridge.core.image.cryptomatte import (
            cryptomatte_channels,
            cryptomatte_metadata,
        )

        job, frame, geometry = self.job, step.frame, self.clip.geometry[step.frame]
        plate = step.plate
        if plate is None and (job.edge == "soft" or job.cutout or job.foreground):
            plate = self.read_plate(frame)
        mattes, scores, ious = {}, step.scores, step.ious
        for obj, logits in step.logits.items():
            if logits is None:
                mattes[obj] = np.zeros((geometry.data[3], geometry.data[2]), np.float32)
            elif step.alphas is not None and obj in step.alphas:
                mattes[obj] = step.alphas[obj]
                if job.layout != "cryptomatte":
                    mattes[obj] = as_half(mattes[obj])
            else:
                mattes[obj] = alpha_from_logits(
                    logits, geometry, job.edge, plate.pixels if plate else None, self.device
                )
                if job.layout != "cryptomatte":  # stored as half: QC and buffers see exactly what the file holds
                    mattes[obj] = as_half(mattes[obj])
            self._record(frame, obj, scores.get(obj), mattes[obj], geometry, ious.get(obj))
        meta = dict(
            self.metadata,
            frame=str(frame),
            tracked=str(step.tracked).lower(),
            plateStamp=self.clip.stamp(frame),
            objectScores=scores,
            objectIoUs=ious,
        )
        paths = self.paths(frame) if job.out else {}
        if job.out and job.layout == "files":
            for obj, alpha in mattes.items():
                extra = {"object": obj}
                if obj in scores:
                    extra["objectScore"] = f"{scores[obj]:.4f}"
                if obj in ious:
                    extra["objectIoU"] = f"{ious[obj]:.4f}"
                channels = {c: alpha for c in job.channels}
                write_matte(paths[obj], channels, geometry, dict(meta, **extra))
        elif job.out:
            channels = {f"{obj}.A": alpha for obj, alpha in mattes.items()}
            standard, pixel_type = {}, "half"
            if job.layout == "cryptomatte":  # ids must be float32 and lossless
                channels.update(cryptomatte_channels("CryptoObject", mattes))
                standard, pixel_type = cryptomatte_metadata("CryptoObject", list(mattes)), "float"
            write_matte(paths["*"], channels, geometry, meta, pixel_type, standard)
        coverage = np.clip(sum(mattes.values()), 0, 1) if job.cutout or job.foreground else None
        estimated = None
        if job.foreground or (job.cutout and job.edge == "matte"):  # hair without the background's spill
            from mattebridge.core.matte.foreground import premultiplied

            estimated = premultiplied(plate.pixels, coverage, job.matte_tile)
        for pattern, name in ((job.cutout, "cutout"), (job.foreground, "foreground")):
            if not pattern:
                continue
            if estimated is not None and (name == "foreground" or job.edge == "matte"):
                rgb = estimated
            else:
                rgb = plate.pixels * coverage[..., None]
            write_matte(
                self.files.path(frame_path(pattern, frame), name),
                {"R": rgb[..., 0], "G": rgb[..., 1], "B": rgb[..., 2], "A": coverage},
                geometry,
                meta,
            )
        return FrameOutcome(frame, paths, mattes if keep_mattes else None, scores, ious)

    def finish(self) -> None:
        if self.report is not None:
            json_path, csv_path = report_paths(self.job)
            self.report.write_json(self.files.path(json_path, "report"))
            self.report.write_csv(self.files.path(csv_path, "report"))


def default_writers() -> int:
    """Writer threads: half the cores (the feed's readers and the model's CPU work share the rest), 1 to 8."""
    return max(1, min(8, (os.cpu_count() or 2) // 2))


class WriterPool:
    """The post's encode step on `writers` threads (OpenImageIO releases the GIL while it compresses and
    writes), outcomes taken back in the order frames were submitted. At most `depth` frames are in flight: the
    model's thread takes the oldest (waiting for it) before it submits more, so memory stays bounded."""

    def __init__(self, writers: int, depth: Optional[int] = None):
        self.depth = depth or 2 * writers
        self._pool = ThreadPoolExecutor(max_workers=writers, thread_name_prefix="mattebridge-writer")
        self._pending: deque = deque()

    def __len__(self) -> int:
        return len(self._pending)

    def submit(self, fn: Callable[..., FrameOutcome], *args) -> None:
        self._pending.append(self._pool.submit(fn, *args))

    def ready(self) -> bool:
        """The oldest frame is finished, or the pool is full and it must be waited for."""
        return bool(self._pending) and (self._pending[0].done() or len(self._pending) >= self.depth)

    def take(self) -> FrameOutcome:
        """The oldest frame's outcome; its error (a one-line MatteBridgeError) is raised here, in frame order."""
        return self._pending.popleft().result()

    def close(self) -> None:
        """Frames not started are dropped; frames being written finish (a file is complete or absent)."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._pending.clear()
