"""The track job: what to track and how, checked before anything is read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional

from mattebridge.core.errors import FieldError
from mattebridge.core.wire.prompts import Prompts
from mattebridge.core.wire.sequence import FrameRange, has_frame_token
from mattebridge.core.wire.vocabulary import DIRECTIONS, EDGE_MODES, LAYOUTS, MATTE_CHANNELS


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
    stabilize: Optional[bool] = None  # temporal smoothing of still regions; None: for soft and hard edges, not raw
    layout: str = "files"  # files: one EXR per object; layers: <object>.A in one EXR; cryptomatte: + Cryptomatte
    report: Optional[str] = None  # QC table: <report>.json and <report>.csv
    cutout: Optional[str] = None  # premultiplied plate RGB x alpha pattern (edge matte: estimated foreground colour)
    foreground: Optional[str] = None  # RGBA pattern: estimated foreground colour x alpha, premultiplied, linear
    matte_model: Optional[str] = None  # edge matte: a catalogue name or a ViTMatte folder (None: the default)
    matte_tile: int = 512  # edge matte: tile side in px, bounds the matting pass's memory
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


def smooths(job: TrackJob) -> bool:
    """Whether mattes are smoothed over time: as asked, else for soft and hard edges. Raw stays raw (the
    sigmoid of the model's logits, frame by frame) unless smoothing is asked for."""
    return job.stabilize if job.stabilize is not None else job.edge != "raw"


def check_job(job: TrackJob) -> None:
    """The job's own fields, before anything is read."""
    if job.direction not in DIRECTIONS:
        raise FieldError("direction", f" {job.direction!r}: expected one of {', '.join(DIRECTIONS)}")
    if job.edge not in EDGE_MODES:
        raise FieldError("edge", f" {job.edge!r}: expected one of {', '.join(EDGE_MODES)}")
    if job.layout not in LAYOUTS:
        raise FieldError("layout", f" {job.layout!r}: expected one of {', '.join(LAYOUTS)}")
    if job.channels not in MATTE_CHANNELS:
        raise FieldError("channels", f" {job.channels!r}: expected one of {', '.join(MATTE_CHANNELS)}")
    if job.channels == "RGBA" and job.layout != "files":
        raise FieldError("channels", " RGBA: only with the files layout")
    if job.fill_holes < 0:
        raise FieldError("fill_holes", f" {job.fill_holes}: expected a number of pixels >= 0")
    if job.matte_tile < 160 or job.matte_tile % 32:
        raise FieldError("matte_tile", f" {job.matte_tile}: expected a multiple of 32, at least 160")
    for name, pattern in (("out", job.out), ("cutout", job.cutout), ("foreground", job.foreground)):
        if pattern and not has_frame_token(pattern) and len(job.frames) > 1:
            raise FieldError(name, f" {pattern}: needs a frame token (####, %04d or @) for a range of frames")
    for name, pattern in (
        ("out", job.out if job.layout != "files" else None),
        ("cutout", job.cutout),
        ("foreground", job.foreground),
    ):
        if pattern and "{object}" in pattern:  # one file holds every object: the token would stay in its name
            raise FieldError(name, f" {pattern}: {{object}} only names the files layout's mattes, one per object")
    if job.out and job.layout == "files" and len(job.prompts.objects) > 1 and "{object}" not in job.out:
        raise FieldError(
            "out", f" {job.out}: several objects ({', '.join(job.prompts.objects)}) need {{object}} in the pattern"
        )
