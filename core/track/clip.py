"""Clip preparation: frames, geometry, colour and prompts in engine terms, checked before any model work."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Dict, List

import numpy as np

from mattebridge.core.errors import MatteBridgeError
from mattebridge.core.image.colour import (
    DisplayTransform,
    config_files,
    load_config,
    resolve_colorspace,
    resolve_view,
)
from mattebridge.core.image.plate import (
    Geometry,
    Plate,
    read_header,
    read_mask,
    read_plate,
    to_display,
)
from mattebridge.core.paths import UNCONFINED, PathPolicy
from mattebridge.core.wire.prompts import Prompts
from mattebridge.core.wire.sequence import FrameRange, frame_path, has_frame_token


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


class SharedReads:
    """Each frame's plate decoded once for its two readers: the model's feed (`read`) and the matte post's edge
    or cut-out step (`take`, on a writer thread, frames later). At most `keep` plates wait between the two, the
    oldest dropped first (the post then decodes that frame again): memory stays bounded whatever the shot."""

    def __init__(self, read: Callable[[int], Plate], keep: int):
        self._read, self.keep = read, keep
        self._plates: "OrderedDict[int, Plate]" = OrderedDict()
        self._lock = threading.Lock()

    def read(self, frame: int) -> Plate:
        plate = self._read(frame)
        with self._lock:
            self._plates[frame] = plate
            self._plates.move_to_end(frame)
            while len(self._plates) > self.keep:
                self._plates.popitem(last=False)
        return plate

    def take(self, frame: int) -> Plate:
        with self._lock:
            plate = self._plates.pop(frame, None)
        return plate if plate is not None else self._read(frame)


def file_stamp(path: str) -> str:
    st = os.stat(path)
    return f"{st.st_size}:{st.st_mtime_ns}"


def prepare_clip(
    plate: str,
    frames: FrameRange,
    layer=None,
    colorspace=None,
    ocio=None,
    view=None,
    paths: PathPolicy = UNCONFINED,
    check_geometry: Callable[[int, Geometry], None] = None,
) -> PreparedClip:
    """`check_geometry(frame, geometry)` (the server's size limits) runs on every header before any pixels
    are read."""
    if not has_frame_token(plate) and len(frames) > 1:
        raise MatteBridgeError(f"{plate}: a range of frames needs a frame token in the path (####, %04d or @)")
    files = {f: frame_path(plate, f) for f in frames}

    def opened(f: int) -> str:  # checked each time it is opened: a frame can become a symlink mid-shot
        return paths.read(files[f], "pattern", f"frame {f}")

    for f in frames:
        if not os.path.exists(opened(f)):
            raise MatteBridgeError(f"{files[f]}: frame {f} is missing")
    geometry = {f: read_header(opened(f), layer) for f in frames}
    for f in frames if check_geometry else ():
        check_geometry(f, geometry[f])
    first = read_plate(opened(frames.first), layer)  # metadata and bit depth of the sequence
    transform = resolve_transform(first, colorspace=colorspace, ocio=ocio, view=view, paths=paths)
    return PreparedClip(
        frames,
        geometry,
        transform,
        lambda f: read_plate(opened(f), layer),
        lambda f: file_stamp(opened(f)),
        os.path.abspath(plate),
        [opened(f) for f in frames],
    )


def resolve_transform(
    first: Plate, colorspace=None, ocio=None, view=None, paths: PathPolicy = UNCONFINED
) -> DisplayTransform:
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


def engine_prompts(prompts: Prompts, geometry: Dict[int, Geometry], paths: PathPolicy):
    """frame -> [(object, ObjectPrompt)] in normalised display coordinates."""
    out: Dict[int, list] = {}
    for obj, per in prompts.objects.items():
        for frame, fp in sorted(per.items()):
            out.setdefault(frame, []).append((obj, engine_prompt(fp, geometry[frame], frame, paths)))
    return out


def engine_prompt(fp, geometry: Geometry, frame: int, paths: PathPolicy = UNCONFINED):
    """One object's FramePrompt -> the engine's ObjectPrompt (normalised display coordinates)."""
    from mattebridge.core.engine.tracker import ObjectPrompt

    w, h = geometry.display_size
    if fp.mask is not None:
        pixels, mgeo = read_mask(paths.read(fp.mask, "mask", f"frame {frame}"))
        if mgeo.display_size != (w, h):
            raise MatteBridgeError(
                f"{fp.mask}: mask display window {mgeo.display_size[0]}x{mgeo.display_size[1]} "
                f"differs from the plate's {w}x{h} on frame {frame}"
            )
        # The model sees the display window only: a mask that covers nothing there would track nothing.
        inside = to_display(pixels, mgeo) > 0.5
        if not inside.any():
            where = "lies outside the display window (in the overscan)" if (pixels > 0.5).any() else "is empty"
            raise MatteBridgeError(
                f"{fp.mask}: mask on frame {frame} {where}; the model sees only the display window {w}x{h}"
            )
        return ObjectPrompt(mask=inside)
    pts = [(p.x / w, p.y / h) for p in fp.points]
    return ObjectPrompt(
        points=np.array(pts, np.float32).reshape(-1, 2) if pts else None,
        labels=np.array([1 if p.positive else 0 for p in fp.points], np.int32) if pts else None,
        box=None
        if fp.box is None
        else np.array([fp.box[0] / w, fp.box[1] / h, fp.box[2] / w, fp.box[3] / h], np.float32),
    )
