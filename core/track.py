"""The track job: plate sequence + prompts -> one alpha EXR per frame (and object)."""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import numpy as np

from . import __version__
from .alpha import EDGE_MODES, alpha_from_logits
from .colour import DisplayTransform, config_files, load_config, resolve_colorspace, resolve_view
from .errors import MatteBridgeError
from .matte_io import write_matte
from .paths import UNCONFINED, InputSet, OutputConflict, PathPolicy
from .plate import Geometry, Plate, read_header, read_mask, read_plate, to_display
from .prompts import Prompts
from .sequence import FrameRange, frame_path, has_frame_token

DIRECTIONS = ("forward", "backward", "both")
LAYOUTS = ("files", "layers", "cryptomatte")
CHANNELS = ("A", "RGBA")  # RGBA: the matte in R, G, B and A (Blender's Mask modifier reads min(R, G, B))


@dataclass
class TrackJob:
    plate: str
    frames: FrameRange
    prompts: Prompts
    out: Optional[str]  # matte file pattern; None: mattes only come back in memory (server buffers)
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
    channels: str = "A"  # A, or RGBA (layout files only)
    force: bool = False  # recompute frames already written by the same job
    prompts_file: Optional[str] = None  # where the prompts came from (an input: never overwritten)
    model: str = "sam2.1_hiera_small"
    checkpoint: Optional[str] = None
    model_config: Optional[str] = None
    image_size: Optional[int] = None
    device: str = "auto"


@dataclass
class TrackStats:
    frames_written: int = 0
    frames_skipped: int = 0  # already on disk from the same job
    seconds: Dict[str, float] = field(default_factory=lambda: {"read": 0.0, "colour": 0.0, "engine": 0.0, "write": 0.0})


def out_path(pattern: str, frame: int, obj: str) -> str:
    return frame_path(pattern.replace("{object}", obj), frame)


def matte_paths(job: "TrackJob", frame: int) -> Dict[str, str]:
    """object (or "*" for one file holding every object) -> the matte file of `frame`."""
    if job.layout == "files":
        return {obj: out_path(job.out, frame, obj) for obj in job.prompts.objects}
    return {"*": frame_path(job.out, frame)}


def report_paths(job: "TrackJob") -> List[str]:
    stem = os.path.splitext(job.report)[0]
    return [stem + ".json", stem + ".csv"]


def job_outputs(job: "TrackJob"):
    """(flag, path) of every file the job writes."""
    for frame in job.frames:
        if job.out:
            for path in matte_paths(job, frame).values():
                yield "--out", path
        if job.cutout:
            yield "--cutout", frame_path(job.cutout, frame)
    for path in report_paths(job) if job.report else ():
        yield "--report", path


def check_outputs(job: "TrackJob", clip: "PreparedClip", paths: PathPolicy = UNCONFINED) -> InputSet:
    """Every file the job will write, resolved: allowed by `paths`, never one of the job's inputs (by path or
    inode: a hard link or a symlinked folder is the same file), never written twice. Returns the inputs."""
    inputs = InputSet()
    for path in clip.inputs:
        inputs.add(path, "a plate frame")
    for obj, per in job.prompts.objects.items():
        for frame, fp in per.items():
            if fp.mask:
                inputs.add(fp.mask, f"the mask of {obj!r} on frame {frame}")
    config = clip.transform.config_source
    if config and not config.startswith("ocio://"):
        inputs.add(config, "the OCIO config")
    if job.prompts_file:
        inputs.add(job.prompts_file, "the prompts file")
    written: Dict[str, str] = {}
    for flag, path in job_outputs(job):
        real = paths.write(path, flag)
        inputs.refuse_overwrite(real, flag, path)
        if written.setdefault(real, flag) != flag:
            raise OutputConflict(f"{flag} {path}: is also written by {written[real]}")
    return inputs


@dataclass
class PreparedClip:
    """Everything about the plate checked before any model work: frames, geometry, colour, pixels."""

    frames: FrameRange
    geometry: Dict[int, Geometry]
    transform: DisplayTransform
    read: Callable[[int], Plate]  # frame number -> plate
    stamp: Callable[[int], str]  # frame number -> identity of that frame's pixels (for resuming)
    source: str  # what the matte header records as the plate
    inputs: List[str] = field(default_factory=list)  # the resolved plate files (outputs must never be one)


def file_stamp(path: str) -> str:
    st = os.stat(path)
    return f"{st.st_size}:{st.st_mtime_ns}"


def prepare_clip(plate: str, frames: FrameRange, layer=None, colorspace=None, ocio=None, view=None,
                 paths: PathPolicy = UNCONFINED, check_geometry: Callable[[int, Geometry], None] = None
                 ) -> PreparedClip:
    """`check_geometry(frame, geometry)` (the server's size limits) runs on every header before any pixels
    are read."""
    if not has_frame_token(plate) and len(frames) > 1:
        raise MatteBridgeError(f"{plate}: a range of frames needs a frame token in the path (####, %04d or @)")
    files = {f: frame_path(plate, f) for f in frames}

    def opened(f: int) -> str:  # checked each time it is opened: a frame can become a symlink mid-shot
        return paths.read(files[f], f"plate frame {f}")

    for f in frames:
        if not os.path.exists(opened(f)):
            raise MatteBridgeError(f"{files[f]}: frame {f} is missing")
    geometry = {f: read_header(opened(f), layer) for f in frames}
    for f in frames if check_geometry else ():
        check_geometry(f, geometry[f])
    first = read_plate(opened(frames.first), layer)  # metadata and bit depth of the sequence
    transform = resolve_transform(first, colorspace, ocio, view, paths)
    return PreparedClip(frames, geometry, transform, lambda f: read_plate(opened(f), layer),
                        lambda f: file_stamp(opened(f)), os.path.abspath(plate), [opened(f) for f in frames])


def resolve_transform(first: Plate, colorspace=None, ocio=None, view=None,
                      paths: PathPolicy = UNCONFINED) -> DisplayTransform:
    """The plate's colour space -> display/view. A config named by the job is checked before OCIO parses it,
    and every file it references after (a config can name any LUT on disk)."""
    if ocio and not ocio.startswith("ocio://"):
        ocio = paths.colour_config(ocio, "ocio")
    config, source = load_config(ocio)
    if ocio and paths.confined:
        paths.colour_config(ocio, "ocio", config_files(config))
    cs = resolve_colorspace(config, colorspace, first.colorspace, first.is_float, source)
    display, view_name = resolve_view(config, view, source)
    return DisplayTransform(source, cs, display, view_name)


def _engine_prompts(prompts: Prompts, geometry: Dict[int, Geometry], paths: PathPolicy):
    """frame -> [(object, ObjectPrompt)] in normalised display coordinates."""
    out: Dict[int, list] = {}
    for obj, per in prompts.objects.items():
        for frame, fp in sorted(per.items()):
            out.setdefault(frame, []).append((obj, engine_prompt(fp, geometry[frame], frame, paths)))
    return out


def engine_prompt(fp, geometry: Geometry, frame: int, paths: PathPolicy = UNCONFINED):
    """One object's FramePrompt -> the engine's ObjectPrompt (normalised display coordinates)."""
    from .engine import ObjectPrompt

    w, h = geometry.display_size
    if fp.mask is not None:
        pixels, mgeo = read_mask(paths.read(fp.mask, f"mask on frame {frame}"))
        if mgeo.display_size != (w, h):
            raise MatteBridgeError(
                f"{fp.mask}: mask display window {mgeo.display_size[0]}x{mgeo.display_size[1]} "
                f"differs from the plate's {w}x{h} on frame {frame}")
        # The model sees the display window only: a mask that covers nothing there would track nothing.
        inside = to_display(pixels, mgeo) > 0.5
        if not inside.any():
            where = "lies outside the display window (in the overscan)" if (pixels > 0.5).any() else "is empty"
            raise MatteBridgeError(f"{fp.mask}: mask on frame {frame} {where}; the model sees only the display "
                                   f"window {w}x{h}")
        return ObjectPrompt(mask=inside)
    pts = [(p.x / w, p.y / h) for p in fp.points]
    return ObjectPrompt(
        points=np.array(pts, np.float32).reshape(-1, 2) if pts else None,
        labels=np.array([1 if p.positive else 0 for p in fp.points], np.int32) if pts else None,
        box=None if fp.box is None else np.array([fp.box[0] / w, fp.box[1] / h, fp.box[2] / w, fp.box[3] / h], np.float32),
    )


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


def check_job(job: TrackJob) -> None:
    """The job's own fields, before anything is read."""
    if job.direction not in DIRECTIONS:
        raise MatteBridgeError(f"--direction {job.direction!r}: expected one of {', '.join(DIRECTIONS)}")
    if job.edge not in EDGE_MODES:
        raise MatteBridgeError(f"--edge {job.edge!r}: expected one of {', '.join(EDGE_MODES)}")
    if job.layout not in LAYOUTS:
        raise MatteBridgeError(f"--layout {job.layout!r}: expected one of {', '.join(LAYOUTS)}")
    if job.channels not in CHANNELS:
        raise MatteBridgeError(f"--matte-channels {job.channels!r}: expected one of {', '.join(CHANNELS)}")
    if job.channels == "RGBA" and job.layout != "files":
        raise MatteBridgeError("--matte-channels RGBA: only with --layout files")
    for flag, pattern in (("--out", job.out), ("--cutout", job.cutout)):
        if pattern and not has_frame_token(pattern) and len(job.frames) > 1:
            raise MatteBridgeError(f"{flag} {pattern}: needs a frame token (####, %04d or @) for a range of frames")
    if job.out and job.layout == "files" and len(job.prompts.objects) > 1 and "{object}" not in job.out:
        raise MatteBridgeError(f"--out {job.out}: several objects ({', '.join(job.prompts.objects)}) need {{object}} in the pattern")


def run_track(job: TrackJob, progress: Optional[Callable[[int, int, int], None]] = None,
              log: Callable[[str], None] = lambda s: None) -> TrackStats:
    from .models import load_model

    check_job(job)
    clip = prepare_clip(job.plate, job.frames, job.layer, job.colorspace, job.ocio, job.view)
    job.prompts.check(job.frames, lambda frame: clip.geometry[frame].display_size)
    inputs = check_outputs(job, clip)  # before the model loads: a bad --out fails at once, not after a minute
    model = load_model(job.model, job.checkpoint, job.model_config, job.image_size, job.device)
    log(f"model {model.name} on {model.device}, input {model.predictor.image_size}px; "
        f"colour {clip.transform.colorspace} -> {clip.transform.display}/{clip.transform.view}")
    run = TrackRun(job, clip, model, inputs=inputs)
    for outcome in run:
        if progress:
            progress(run.stats.frames_written + run.stats.frames_skipped, len(job.frames), outcome.frame)
    return run.stats


@dataclass
class FrameOutcome:
    frame: int
    paths: Dict[str, str]  # object (or "*" for one file holding every object) -> matte file
    mattes: Optional[Dict[str, np.ndarray]] = None  # object -> alpha over the data window, when kept
    scores: Dict[str, float] = field(default_factory=dict)
    ious: Dict[str, float] = field(default_factory=dict)
    skipped: bool = False  # already on disk from the same job (resumed)


class TrackRun:
    """One job on a prepared clip and a loaded model, as an iterator of per-frame outcomes.

    Stepping it frame by frame is what lets the server take interactive work between frames; closing
    it early (cancel) leaves only complete files. Frames already written by the same job (same plate,
    prompts, model and settings: the EXR header says) are not rewritten unless `job.force`; a pass
    stops early once the rest of it is on disk and no later pass needs its memory.
    """

    def __init__(self, job: TrackJob, clip: PreparedClip, model, keep_mattes: bool = False,
                 paths: PathPolicy = UNCONFINED, inputs: Optional[InputSet] = None):
        self.job, self.clip, self.model, self.keep_mattes, self.paths = job, clip, model, keep_mattes, paths
        self.stats = TrackStats()
        self.key = job_key(job, clip, model)
        files = OutputFiles(paths, inputs or check_outputs(job, clip, paths))
        self.post = MattePost(job, model.predictor.image_size // 4, clip, refine_device(model.device), files, {
            "version": __version__, "model": model.name, "checkpointSHA256": model.sha256,
            "prompts": job.prompts.to_json(), "edge": job.edge, "plate": clip.source,
            "layer": job.layer or "", "jobKey": self.key, **clip.transform.describe(),
        })
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
        return paths + ([self.post.files.path(frame_path(job.cutout, frame), "--cutout")] if job.cutout else [])

    def _done(self, frame: int) -> bool:
        from .matte_io import read_metadata

        outputs = self.outputs(frame)
        if self.job.force or not outputs:
            return False
        stamp = self.clip.stamp(frame)
        for path in outputs:
            meta = read_metadata(path) if os.path.exists(path) else {}
            if meta.get("jobKey") != self.key or meta.get("plateStamp") != stamp:
                return False
        return True

    def _run(self):
        from .engine import StreamingTracker
        from .feed import ModelFeed

        job, frames = self.job, self.job.frames
        remove_stale_temps([p for f in frames for p in self.outputs(f)])
        done = {i for i, f in enumerate(frames) if self._done(f)}
        firsts, later, passes = plan_passes(job.prompts, frames, job.direction)
        handled = set()

        def finish(index, result):
            frame = frames.first + index
            t0 = time.perf_counter()
            if index in done:
                self.post.observe(frame, result)  # keeps temporal smoothing exact; the file is already there
                outcome = self.post.reuse(frame, self.keep_mattes)
                self.stats.frames_skipped += 1
            else:
                outcome = self.post.write(frame, result, self.keep_mattes)
                self.stats.frames_written += 1
            self.stats.seconds["write"] += time.perf_counter() - t0
            handled.add(index)
            return outcome

        if len(done) == len(frames):  # everything is on disk: no model work at all
            for index in range(len(frames)):
                yield finish(index, None)
            self.post.finish()
            return

        per_frame = _engine_prompts(job.prompts, self.clip.geometry, self.paths)
        feed = ModelFeed(list(frames), self.clip.read, self.model.predictor.image_size, self.clip.transform)
        tracker = StreamingTracker(self.model.predictor, feed, len(frames), self.model.device)
        try:
            t0 = time.perf_counter()
            for obj, frame in firsts.items():  # each object's starting prompt, before any tracking
                for o, prompt in per_frame[frame]:
                    if o == obj:
                        tracker.add_prompt(frame - frames.first, obj, prompt)
            corrections = {i: [(o, p) for o, p in per_frame[i + frames.first] if o in objs] for i, objs in later.items()}
            for n, (start, stop, reverse) in enumerate(passes):
                later_passes_done = all(done.issuperset(_span(s, e)) for s, e, _ in passes[n + 1:])
                if later_passes_done and done.issuperset(_span(start, stop)):
                    continue
                self.post.new_pass()
                for result in tracker.propagate(start, stop, reverse, corrections):
                    self.stats.seconds["engine"] += time.perf_counter() - t0
                    if result.index not in handled:
                        yield finish(result.index, result)
                    # the rest of this pass is on disk, and later passes no longer reach back here
                    rest = _span(result.index + (-1 if reverse else 1), stop) if result.index != stop else set()
                    if done.issuperset(rest) and (later_passes_done or abs(result.index - start) >= tracker.reach):
                        break
                    t0 = time.perf_counter()
                t0 = time.perf_counter()
            for index in range(len(frames)):  # frames no pass reached (before a forward start, ...)
                if index not in handled:
                    yield finish(index, None)
            self.post.finish()
        finally:
            feed.close()
            self.stats.seconds["read"] = feed.seconds["read"]
            self.stats.seconds["colour"] = feed.seconds["colour"]


def refine_device(device):
    """Where soft edges are refined: the model's CUDA device when it has one, else numpy on the CPU."""
    return device if getattr(device, "type", None) == "cuda" else None


def _span(a: int, b: int) -> set:
    return set(range(min(a, b), max(a, b) + 1))


def job_key(job: TrackJob, clip: PreparedClip, model) -> str:
    """What produced a matte, hashed: a file with the same key (and plate stamp) need not be redone."""
    doc = {
        "version": __version__, "plate": clip.source, "frames": str(job.frames), "layer": job.layer,
        "prompts": job.prompts.to_json(), "model": model.name, "sha256": model.sha256,
        "imageSize": model.predictor.image_size, "direction": job.direction, "edge": job.edge,
        "fillHoles": job.fill_holes, "stabilize": job.stabilize, "layout": job.layout, "channels": job.channels,
        "cutout": bool(job.cutout), "colour": clip.transform.describe(),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32]


def remove_stale_temps(paths: List[str]) -> None:
    """Temp files a killed writer left next to `paths` (write_matte's naming); never a finished file.
    Each folder is listed once, however many outputs it holds."""
    names_by_folder: Dict[str, set] = {}
    for path in paths:
        folder, name = os.path.split(os.path.abspath(path))
        names_by_folder.setdefault(folder, set()).add(name)
    for folder, names in names_by_folder.items():
        if not os.path.isdir(folder):
            continue
        for entry in os.listdir(folder):
            if entry.startswith(".") and entry.endswith(".tmp.exr") and entry[1:].rsplit(".", 3)[0] in names:
                try:
                    os.unlink(os.path.join(folder, entry))
                except OSError:
                    pass


class OutputFiles:
    """Where outputs really go: each path resolved and checked when it is opened (a folder can become a
    symlink mid-shot), never onto one of the job's inputs."""

    def __init__(self, paths: PathPolicy, inputs: InputSet):
        self.paths, self.inputs = paths, inputs

    def path(self, path: str, flag: str) -> str:
        real = self.paths.write(path, flag)
        self.inputs.refuse_overwrite(real, flag, path)
        return real


class MattePost:
    """Logits -> mattes on disk: stabilise, fill holes, edge mode, layout, QC and cut-outs."""

    def __init__(self, job: TrackJob, grid: int, clip: PreparedClip, device, files: OutputFiles,
                 metadata: Dict[str, object]):
        from .confidence import QCReport
        from .temporal import TemporalSmoother

        self.job, self.grid, self.clip, self.device, self.metadata = job, grid, clip, device, metadata
        self.files = files
        self.smoothers = {o: TemporalSmoother(logits=True, radius=1) for o in job.prompts.objects}
        self.report = QCReport() if job.report else None

    def new_pass(self) -> None:
        for smoother in self.smoothers.values():
            smoother.reset()

    def paths(self, frame: int) -> Dict[str, str]:
        """The frame's matte files, resolved and checked as they are about to be opened."""
        return {key: self.files.path(p, "--out") for key, p in matte_paths(self.job, frame).items()}

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

    def observe(self, frame: int, result) -> None:
        """A frame computed but not written (resumed): only the temporal state moves on."""
        if result is not None and self.job.stabilize:
            for obj in self.job.prompts.objects:
                if obj in result.logits:
                    self.smoothers[obj](result.logits[obj])

    def reuse(self, frame: int, keep_mattes: bool = False) -> "FrameOutcome":
        """A frame already on disk: its outcome (QC record, mattes when kept) from the files."""
        from .matte_io import read_channels, read_metadata

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
                if self.report is not None:
                    self.report.add(frame, obj, scores.get(obj, float("-inf")), mattes[obj], geometry.data[:2],
                                    ious.get(obj))
        return FrameOutcome(frame, paths, mattes if keep_mattes else None, scores, ious, skipped=True)

    def write(self, frame: int, result, keep_mattes: bool = False) -> "FrameOutcome":
        from .cryptomatte import cryptomatte_channels, cryptomatte_metadata

        job, geometry = self.job, self.clip.geometry[frame]
        plate = self.clip.read(frame) if job.edge == "soft" or job.cutout else None
        mattes, scores, ious = {}, {}, {}
        for obj in job.prompts.objects:
            logits = self._logits(obj, result, geometry)
            if logits is None:
                mattes[obj] = np.zeros((geometry.data[3], geometry.data[2]), np.float32)
            else:
                mattes[obj] = alpha_from_logits(logits, geometry, job.edge, plate.pixels if plate else None, self.device)
                if job.layout != "cryptomatte":  # stored as half: QC and buffers see exactly what the file holds
                    mattes[obj] = mattes[obj].astype(np.float16).astype(np.float32)
                scores[obj] = round(result.scores[obj], 4)
                if result.ious and obj in result.ious:
                    ious[obj] = round(result.ious[obj], 4)
            if self.report is not None:
                self.report.add(frame, obj, scores.get(obj, float("-inf")), mattes[obj], geometry.data[:2], ious.get(obj))
        meta = dict(self.metadata, frame=str(frame), tracked=str(result is not None).lower(),
                    plateStamp=self.clip.stamp(frame), objectScores=scores, objectIoUs=ious)
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
        if job.cutout:
            coverage = np.clip(sum(mattes.values()), 0, 1)
            rgb = plate.pixels * coverage[..., None]  # the plate's own colour space, untouched otherwise
            write_matte(self.files.path(frame_path(job.cutout, frame), "--cutout"),
                        {"R": rgb[..., 0], "G": rgb[..., 1], "B": rgb[..., 2], "A": coverage}, geometry, meta)
        return FrameOutcome(frame, paths, mattes if keep_mattes else None, scores, ious)

    def finish(self) -> None:
        if self.report is not None:
            json_path, csv_path = report_paths(self.job)
            self.report.write_json(self.files.path(json_path, "--report"))
            self.report.write_csv(self.files.path(csv_path, "--report"))
