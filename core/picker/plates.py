"""The plate as the window shows it: read locally, display window, downsampled in linear light, then
through the show's OCIO display/view (the same rules the server applies for the model).

No Qt here. Uses OpenImageIO and OpenColorIO (the `server` extra), never torch.
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np

from mattebridge.core.errors import MatteBridgeError
from mattebridge.core.image.colour import DisplayTransform, load_config, resolve_colorspace, resolve_view
from mattebridge.core.image.plate import Geometry, Plate, read_header, read_plate, to_display
from mattebridge.core.image.resample import area_resize
from mattebridge.core.wire.sequence import FrameRange, frame_path, has_frame_token

_TOKEN = re.compile(r"#+|@+|%0?\d*d")


def discover_frames(pattern: str) -> Optional[FrameRange]:
    """The frames of `pattern` on disk (first to last), or None for a single file."""
    if not has_frame_token(pattern):
        return None
    folder, name = os.path.split(os.path.abspath(pattern))
    m = _TOKEN.search(name)
    regex = re.compile(re.escape(name[: m.start()]) + r"(-?\d+)" + re.escape(name[m.end() :]) + r"\Z")
    try:
        entries = os.listdir(folder)
    except OSError:
        raise MatteBridgeError(f"{pattern}: folder {folder} not found") from None
    frames = []
    for entry in entries:
        hit = regex.match(entry)
        if hit and os.path.basename(frame_path(name, int(hit.group(1)))) == entry:
            frames.append(int(hit.group(1)))
    if not frames:
        raise MatteBridgeError(f"{pattern}: no frames found on disk")
    return FrameRange(min(frames), max(frames))


def plate_frames(pattern: str, frames: Optional[str], frame: Optional[int]) -> FrameRange:
    """--frames, else what is on disk; a single file is one frame (--frame, else 1)."""
    if frames:
        rng = FrameRange.parse(frames)
        if not has_frame_token(pattern) and len(rng) > 1:
            raise MatteBridgeError(f"{pattern}: a range of frames needs a frame token in the path (####, %04d or @)")
        return rng
    found = discover_frames(pattern)
    if found is not None:
        return found
    if not os.path.exists(pattern):
        raise MatteBridgeError(f"{pattern}: file not found")
    single = 1 if frame is None else int(frame)
    return FrameRange(single, single)


def display_transform(first: Plate, colorspace=None, ocio=None, view=None) -> DisplayTransform:
    config, source = load_config(ocio)
    cs = resolve_colorspace(config, colorspace, first.colorspace, first.is_float, source)
    display, view_name = resolve_view(config, view, source)
    return DisplayTransform(source, cs, display, view_name)


def preview_shape(geometry: Geometry, max_size: int) -> Tuple[int, int]:
    """(height, width) of the preview of a display window: at most `max_size` pixels on its longer side."""
    w, h = geometry.display_size
    scale = min(1.0, max_size / float(max(w, h)))
    return max(1, int(round(h * scale))), max(1, int(round(w * scale)))


def alpha_preview(alpha: np.ndarray, geometry: Geometry, shape: Tuple[int, int]) -> np.ndarray:
    """A matte over the data window -> uint8 (h, w) over the display window at preview size."""
    full = to_display(np.asarray(alpha, np.float32), geometry)
    small = area_resize(full, shape[0], shape[1]) if full.shape != tuple(shape) else full
    return (np.clip(small, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


@dataclass
class Preview:
    frame: int
    rgb: np.ndarray  # uint8 (h, w, 3), display-referred, over the display window
    geometry: Geometry


class PlateSource:
    """Frames of one plate, ready to show. Thread-safe; keeps the last few previews."""

    def __init__(
        self,
        pattern: str,
        frames: FrameRange,
        layer=None,
        colorspace=None,
        ocio=None,
        view=None,
        preview_size: int = 2048,
        keep: int = 8,
    ):
        self.pattern, self.frames, self.layer = pattern, frames, layer
        self._colour = (colorspace, ocio, view)
        self.preview_size = preview_size
        self._keep = keep
        self._cache: "OrderedDict[int, Preview]" = OrderedDict()
        self._geometry: Dict[int, Geometry] = {}
        self._transform: Optional[DisplayTransform] = None
        self._lock = threading.Lock()

    def path(self, frame: int) -> str:
        return frame_path(self.pattern, frame)

    def check(self, frame: int) -> None:
        if frame not in self.frames:
            raise MatteBridgeError(f"frame {frame} is outside the plate's range {self.frames}")

    def geometry(self, frame: int) -> Geometry:
        self.check(frame)
        with self._lock:
            if frame not in self._geometry:
                self._geometry[frame] = read_header(self.path(frame), self.layer)
            return self._geometry[frame]

    @property
    def transform(self) -> DisplayTransform:
        with self._lock:
            if self._transform is None:
                first = read_plate(self.path(self.frames.first), self.layer)
                self._transform = display_transform(first, *self._colour)
            return self._transform

    def preview(self, frame: int) -> Preview:
        self.check(frame)
        with self._lock:
            if frame in self._cache:
                self._cache.move_to_end(frame)
                return self._cache[frame]
        transform = self.transform
        plate = read_plate(self.path(frame), self.layer)
        h, w = preview_shape(plate.geometry, self.preview_size)
        linear = area_resize(to_display(plate.pixels, plate.geometry), h, w)
        rgb = np.clip(transform.apply(linear), 0.0, 1.0)
        shown = Preview(frame, (rgb * 255.0 + 0.5).astype(np.uint8), plate.geometry)
        with self._lock:
            self._geometry[frame] = plate.geometry
            self._cache[frame] = shown
            while len(self._cache) > self._keep:
                self._cache.popitem(last=False)
        return shown
