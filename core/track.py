"""The track job: plate sequence + prompts -> one alpha EXR per frame (and object)."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import numpy as np

from . import __version__
from .alpha import EDGE_MODES, alpha_from_logits
from .colour import DisplayTransform, load_config, resolve_colorspace, resolve_view
from .errors import MatteBridgeError
from .matte_io import write_matte
from .plate import Geometry, read_header, read_mask, read_plate, to_display
from .prompts import Prompts
from .sequence import FrameRange, frame_path, has_frame_token

DIRECTIONS = ("forward", "backward", "both")
LAYOUTS = ("files", "layers", "cryptomatte")


@dataclass
class TrackJob:
    plate: str
    frames: FrameRange
    prompts: Prompts
    out: str
    layer: Optional[str] = None
    colorspace: Optional[str] = None
    ocio: Optional[str] = None
    view: Optional[str] = None
    direction: str = "both"
    edge: str = "soft"
    fill_holes: int = 0  # holes and islands up to this many plate pixels are removed (0: off)
    stabilize: bool = True  # temporal smoothing of still regions
    layout: str = "files"  # files: one EXR per object; layers: <object>.A in one EXR; cryptomatte: + Cryptomatte
    report: Optional[str] = None  # QC table: <report>.json and <report>.csv
    cutout: Optional[str] = None  # premultiplied plate RGB x alpha pattern
    model: str = "sam2.1_hiera_small"
    checkpoint: Optional[str] = None
    model_config: Optional[str] = None
    image_size: Optional[int] = None
    device: str = "auto"


@dataclass
class TrackStats:
    frames_written: int = 0
    seconds: Dict[str, float] = field(default_factory=lambda: {"read": 0.0, "colour": 0.0, "engine": 0.0, "write": 0.0})


def out_path(pattern: str, frame: int, obj: str) -> str:
    return frame_path(pattern.replace("{object}", obj), frame)


@dataclass
class PreparedClip:
    """Everything about the plate checked before any model work: paths, geometry, colour."""

    paths: List[str]
    geometry: Dict[int, Geometry]
    transform: DisplayTransform


def prepare_clip(plate: str, frames: FrameRange, layer=None, colorspace=None, ocio=None, view=None) -> PreparedClip:
    if not has_frame_token(plate) and len(frames) > 1:
        raise MatteBridgeError(f"{plate}: a range of frames needs a frame token in the path (####, %04d or @)")
    paths = [frame_path(plate, f) for f in frames]
    for f, p in zip(frames, paths):
        if not os.path.exists(p):
            raise MatteBridgeError(f"{p}: frame {f} is missing")
    geometry = {f: read_header(p, layer) for f, p in zip(frames, paths)}
    config, source = load_config(ocio)
    first = read_plate(paths[0], layer)  # metadata and bit depth of the sequence
    cs = resolve_colorspace(config, colorspace, first.colorspace, first.is_float, source)
    display, view_name = resolve_view(config, view, source)
    return PreparedClip(paths, geometry, DisplayTransform(source, cs, display, view_name))


def _engine_prompts(prompts: Prompts, geometry: Dict[int, Geometry]):
    """frame -> [(object, ObjectPrompt)] in normalised display coordinates."""
    from .engine import ObjectPrompt

    out: Dict[int, list] = {}
    for obj, per in prompts.objects.items():
        for frame, fp in sorted(per.items()):
            w, h = geometry[frame].display_size
            if fp.mask is not None:
                pixels, mgeo = read_mask(fp.mask)
                if mgeo.display_size != (w, h):
                    raise MatteBridgeError(
                        f"{fp.mask}: mask display window {mgeo.display_size[0]}x{mgeo.display_size[1]} "
                        f"differs from the plate's {w}x{h} on frame {frame}")
                prompt = ObjectPrompt(mask=to_display(pixels, mgeo) > 0.5)
            else:
                pts = [(p.x / w, p.y / h) for p in fp.points]
                prompt = ObjectPrompt(
                    points=np.array(pts, np.float32).reshape(-1, 2) if pts else None,
                    labels=np.array([1 if p.positive else 0 for p in fp.points], np.int32) if pts else None,
                    box=None if fp.box is None else np.array(
                        [fp.box[0] / w, fp.box[1] / h, fp.box[2] / w, fp.box[3] / h], np.float32),
                )
            out.setdefault(frame, []).append((obj, prompt))
    return out


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


def run_track(job: TrackJob, progress: Optional[Callable[[int, int, int], None]] = None,
              log: Callable[[str], None] = lambda s: None) -> TrackStats:
    from .engine import StreamingTracker
    from .feed import ModelFeed
    from .models import load_model

    if job.direction not in DIRECTIONS:
        raise MatteBridgeError(f"--direction {job.direction!r}: expected one of {', '.join(DIRECTIONS)}")
    if job.edge not in EDGE_MODES:
        raise MatteBridgeError(f"--edge {job.edge!r}: expected one of {', '.join(EDGE_MODES)}")
    if not has_frame_token(job.out) and len(job.frames) > 1:
        raise MatteBridgeError(f"--out {job.out}: needs a frame token (####, %04d or @) for a range of frames")
    if job.layout not in LAYOUTS:
        raise MatteBridgeError(f"--layout {job.layout!r}: expected one of {', '.join(LAYOUTS)}")
    if job.cutout and not has_frame_token(job.cutout) and len(job.frames) > 1:
        raise MatteBridgeError(f"--cutout {job.cutout}: needs a frame token (####, %04d or @) for a range of frames")
    if job.layout == "files" and len(job.prompts.objects) > 1 and "{object}" not in job.out:
        raise MatteBridgeError(f"--out {job.out}: several objects ({', '.join(job.prompts.objects)}) need {{object}} in the pattern")

    clip = prepare_clip(job.plate, job.frames, job.layer, job.colorspace, job.ocio, job.view)
    job.prompts.check(job.frames, lambda frame: clip.geometry[frame].display_size)
    per_frame = _engine_prompts(job.prompts, clip.geometry)
    model = load_model(job.model, job.checkpoint, job.model_config, job.image_size, job.device)
    log(f"model {model.name} on {model.device}, input {model.predictor.image_size}px; "
        f"colour {clip.transform.colorspace} -> {clip.transform.display}/{clip.transform.view}")

    feed = ModelFeed(clip.paths, lambda p: read_plate(p, job.layer), model.predictor.image_size, clip.transform)
    tracker = StreamingTracker(model.predictor, feed, len(job.frames), model.device)
    firsts, later, passes = plan_passes(job.prompts, job.frames, job.direction)
    stats = TrackStats()
    metadata = {
        "version": __version__, "model": model.name, "checkpointSHA256": model.sha256,
        "prompts": job.prompts.to_json(), "edge": job.edge, "plate": os.path.abspath(job.plate),
        "layer": job.layer or "", **clip.transform.describe(),
    }
    written = set()
    post = MattePost(job, model.predictor.image_size // 4, clip.geometry, metadata)

    def emit(index, result):
        frame = job.frames.first + index
        t0 = time.perf_counter()
        post.write(frame, result)
        stats.seconds["write"] += time.perf_counter() - t0
        written.add(index)
        stats.frames_written += 1
        if progress:
            progress(len(written), len(job.frames), frame)

    try:
        t0 = time.perf_counter()
        for obj, frame in firsts.items():  # each object's starting prompt, before any tracking
            for o, prompt in per_frame[frame]:
                if o == obj:
                    tracker.add_prompt(frame - job.frames.first, obj, prompt)
        corrections = {i: [(o, p) for o, p in per_frame[i + job.frames.first] if o in objs] for i, objs in later.items()}
        for start, stop, reverse in passes:
            post.new_pass()
            for result in tracker.propagate(start, stop, reverse, corrections):
                stats.seconds["engine"] += time.perf_counter() - t0
                if result.index not in written:
                    emit(result.index, result)
                t0 = time.perf_counter()
        for index in range(len(job.frames)):  # frames no pass reached (before a forward start, ...)
            if index not in written:
                emit(index, None)
        post.finish()
    finally:
        feed.close()
    stats.seconds["read"] = feed.seconds["read"]
    stats.seconds["colour"] = feed.seconds["colour"]
    return stats


class MattePost:
    """Logits -> mattes on disk: stabilise, fill holes, edge mode, layout, QC and cut-outs."""

    def __init__(self, job: TrackJob, grid: int, geometry: Dict[int, Geometry], metadata: Dict[str, object]):
        from .confidence import QCReport
        from .temporal import TemporalSmoother

        self.job, self.grid, self.geometry, self.metadata = job, grid, geometry, metadata
        self.smoothers = {o: TemporalSmoother(logits=True, radius=1) for o in job.prompts.objects}
        self.report = QCReport() if job.report else None

    def new_pass(self) -> None:
        for smoother in self.smoothers.values():
            smoother.reset()

    def _logits(self, obj: str, result, geometry: Geometry) -> Optional[np.ndarray]:
        from .holes import fill_holes_logits

        if result is None or obj not in result.logits:
            return None
        logits = result.logits[obj]
        if self.job.stabilize:
            logits = self.smoothers[obj](logits)
        if self.job.fill_holes:
            w, h = geometry.display_size
            cells = int(self.job.fill_holes * self.grid * self.grid / (w * h))
            if cells > 0:
                logits = fill_holes_logits(logits, cells)
        return logits

    def write(self, frame: int, result) -> None:
        from .cryptomatte import cryptomatte_channels, cryptomatte_metadata

        job, geometry = self.job, self.geometry[frame]
        path = frame_path(job.plate, frame)
        plate = read_plate(path, job.layer) if job.edge == "soft" or job.cutout else None
        mattes, scores = {}, {}
        for obj in job.prompts.objects:
            logits = self._logits(obj, result, geometry)
            if logits is None:
                mattes[obj] = np.zeros((geometry.data[3], geometry.data[2]), np.float32)
            else:
                mattes[obj] = alpha_from_logits(logits, geometry, job.edge, plate.pixels if plate else None)
                scores[obj] = result.scores[obj]
            if self.report is not None:
                self.report.add(frame, obj, scores.get(obj, float("-inf")), mattes[obj], geometry.data[:2])
        meta = dict(self.metadata, frame=str(frame), tracked=str(result is not None).lower())
        if job.layout == "files":
            for obj, alpha in mattes.items():
                extra = {"object": obj, "objectScore": f"{scores[obj]:.4f}"} if obj in scores else {"object": obj}
                write_matte(out_path(job.out, frame, obj), {"A": alpha}, geometry, dict(meta, **extra))
        else:
            channels = {f"{obj}.A": alpha for obj, alpha in mattes.items()}
            standard, pixel_type = {}, "half"
            if job.layout == "cryptomatte":  # ids must be float32 and lossless
                channels.update(cryptomatte_channels("CryptoObject", mattes))
                standard, pixel_type = cryptomatte_metadata("CryptoObject", list(mattes)), "float"
            meta["objectScores"] = {o: round(s, 4) for o, s in scores.items()}
            write_matte(frame_path(job.out, frame), channels, geometry, meta, pixel_type, standard)
        if job.cutout:
            coverage = np.clip(sum(mattes.values()), 0, 1)
            rgb = plate.pixels * coverage[..., None]  # the plate's own colour space, untouched otherwise
            write_matte(frame_path(job.cutout, frame), {"R": rgb[..., 0], "G": rgb[..., 1], "B": rgb[..., 2],
                                                         "A": coverage}, geometry, meta)

    def finish(self) -> None:
        if self.report is not None:
            stem = os.path.splitext(self.job.report)[0]
            self.report.write_json(stem + ".json")
            self.report.write_csv(stem + ".csv")
