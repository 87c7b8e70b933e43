"""Reading plate frames with OpenImageIO, keeping their geometry (display/data window, pixel aspect)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .errors import MatteBridgeError

Window = Tuple[int, int, int, int]  # x, y, width, height in OIIO's absolute pixel coordinates
HALF_MAX = 65504.0


@dataclass(frozen=True)
class Geometry:
    display: Window
    data: Window
    pixel_aspect: float = 1.0

    @property
    def display_size(self) -> Tuple[int, int]:
        return self.display[2], self.display[3]

    def to_json(self) -> dict:
        return {"display": list(self.display), "data": list(self.data), "pixel_aspect": self.pixel_aspect}

    @classmethod
    def from_json(cls, doc) -> "Geometry":
        return cls(tuple(int(v) for v in doc["display"]), tuple(int(v) for v in doc["data"]),
                   float(doc.get("pixel_aspect", 1.0)))


@dataclass
class Plate:
    """One frame: RGB pixels of its data window (float32, finite) and where they sit."""

    path: str
    pixels: np.ndarray  # (data height, data width, 3)
    geometry: Geometry
    colorspace: str  # the file's own colour-space metadata, "" when it has none
    is_float: bool  # stored as half/float (scene-linear by default) rather than integers


@dataclass(frozen=True)
class _Source:
    subimage: int
    channels: Tuple[int, ...]  # 3 indices (R, G, B) or 1 (luminance / single channel)
    spec: object


def _open(path: str):
    import OpenImageIO as oiio

    if not os.path.exists(path):
        raise MatteBridgeError(f"{path}: file not found")
    inp = oiio.ImageInput.open(path)
    if inp is None:
        msg = oiio.geterror().strip().splitlines()
        raise MatteBridgeError(f"{path}: unreadable or corrupt image ({msg[0] if msg else 'unknown format'})")
    return inp


def _subimage_specs(inp) -> List[object]:
    specs = []
    while inp.seek_subimage(len(specs), 0):
        specs.append(inp.spec())
    return specs


def _part_name(spec, index: int) -> str:
    return spec.get_string_attribute("name") or spec.get_string_attribute("oiio:subimagename") or f"part{index}"


def _find(names: Sequence[str], prefix: str, wanted: Sequence[str]) -> Optional[Tuple[int, ...]]:
    lookup = {n.lower(): i for i, n in enumerate(names)}
    found = [lookup.get((prefix + w).lower()) for w in wanted]
    return None if None in found else tuple(found)


def _layers(specs) -> List[str]:
    out = []
    for i, spec in enumerate(specs):
        out.append(_part_name(spec, i))
        out += sorted({n.rsplit(".", 1)[0] for n in spec.channelnames if "." in n} - set(out))
    return out


def _choose(path: str, specs, layer: Optional[str]) -> _Source:
    if layer is None:
        spec = specs[0]
        for prefix in ("", "rgba.", "rgb."):
            for wanted in (("R", "G", "B"), ("Y",)):
                idx = _find(spec.channelnames, prefix, wanted)
                if idx:
                    return _Source(0, idx, spec)
        if spec.nchannels in (1, 3):
            return _Source(0, tuple(range(spec.nchannels)), spec)
        raise MatteBridgeError(
            f"{path}: no R,G,B or Y channels in the first part; pick one with --layer (layers: {', '.join(_layers(specs))})")
    for i, spec in enumerate(specs):  # a part of a multi-part file, by name
        if _part_name(spec, i) == layer:
            return _in_part(path, specs, i)
    for i, spec in enumerate(specs):  # a layer inside a part: layer.R, layer.G, layer.B (or layer.Y)
        for wanted in (("R", "G", "B"), ("Y",)):
            idx = _find(spec.channelnames, layer + ".", wanted)
            if idx:
                return _Source(i, idx, spec)
    raise MatteBridgeError(f"{path}: no layer {layer!r} (layers: {', '.join(_layers(specs))})")


def _in_part(path: str, specs, index: int) -> _Source:
    src = _choose(path, [specs[index]], None)
    return _Source(index, src.channels, specs[index])


def geometry_of(spec) -> Geometry:
    aspect = spec.get_float_attribute("PixelAspectRatio", 1.0) or 1.0
    return Geometry(
        display=(spec.full_x, spec.full_y, spec.full_width, spec.full_height),
        data=(spec.x, spec.y, spec.width, spec.height),
        pixel_aspect=float(aspect),
    )


def read_header(path: str, layer: Optional[str] = None) -> Geometry:
    """Geometry of a frame without reading its pixels (also checks the layer exists)."""
    inp = _open(path)
    try:
        src = _choose(path, _subimage_specs(inp), layer)
        return geometry_of(src.spec)
    finally:
        inp.close()


def read_plate(path: str, layer: Optional[str] = None) -> Plate:
    inp = _open(path)
    try:
        src = _choose(path, _subimage_specs(inp), layer)
        lo, hi = min(src.channels), max(src.channels) + 1
        pixels = inp.read_image(src.subimage, 0, lo, hi, "float")
        if pixels is None:
            raise MatteBridgeError(f"{path}: corrupt or truncated image data ({inp.geterror().strip() or 'read failed'})")
        pixels = np.asarray(pixels, dtype=np.float32).reshape(src.spec.height, src.spec.width, hi - lo)
        pixels = pixels[:, :, [c - lo for c in src.channels]]
        if pixels.shape[2] == 1:
            pixels = np.repeat(pixels, 3, axis=2)
        fmt = str(src.spec.format)
        return Plate(
            path=path,
            pixels=make_finite(pixels),
            geometry=geometry_of(src.spec),
            colorspace=src.spec.get_string_attribute("oiio:ColorSpace") or "",
            is_float=fmt in ("half", "float", "double"),
        )
    finally:
        inp.close()


def read_mask(path: str) -> Tuple[np.ndarray, Geometry]:
    """A mask prompt image: its alpha, or its only channel, over its data window."""
    inp = _open(path)
    try:
        spec = inp.spec()
        names = [n.lower() for n in spec.channelnames]
        if "a" in names:
            ch = names.index("a")
        elif spec.nchannels == 1:
            ch = 0
        else:
            raise MatteBridgeError(f"{path}: a mask needs an alpha channel or a single channel (has {', '.join(spec.channelnames)})")
        pixels = inp.read_image(0, 0, ch, ch + 1, "float")
        if pixels is None:
            raise MatteBridgeError(f"{path}: corrupt or truncated image data")
        mask = make_finite(np.asarray(pixels, np.float32).reshape(spec.height, spec.width))
        return mask, geometry_of(spec)
    finally:
        inp.close()


def make_finite(pixels: np.ndarray) -> np.ndarray:
    """NaN -> 0, +-Inf -> +-half max: the model (and a resampling filter) must never see them."""
    if np.isfinite(pixels).all():
        return pixels
    return np.nan_to_num(pixels, nan=0.0, posinf=HALF_MAX, neginf=-HALF_MAX)


def to_display(pixels: np.ndarray, geometry: Geometry) -> np.ndarray:
    """The display window's view of data-window pixels: outside the data window is 0, overscan is cut."""
    dx, dy, dw, dh = geometry.display
    x, y, w, h = geometry.data
    if (x, y, w, h) == (dx, dy, dw, dh):
        return pixels
    out = np.zeros((dh, dw) + pixels.shape[2:], dtype=pixels.dtype)
    x0, x1 = max(x, dx), min(x + w, dx + dw)
    y0, y1 = max(y, dy), min(y + h, dy + dh)
    if x1 > x0 and y1 > y0:
        out[y0 - dy:y1 - dy, x0 - dx:x1 - dx] = pixels[y0 - y:y1 - y, x0 - x:x1 - x]
    return out
