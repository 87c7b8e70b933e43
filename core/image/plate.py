"""Reading plate frames with OpenImageIO, keeping their geometry (display/data window, pixel aspect)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from mattebridge.core.errors import MatteBridgeError

Window = Tuple[int, int, int, int]  # x, y, width, height in OIIO's absolute pixel coordinates
HALF_MAX = 65504.0
# A damaged header can claim any window; these bound what a frame may make us allocate (a 16K x 16K plate fits).
MAX_SIDE = 65536
MAX_PIXELS = 1 << 28


def printable_line(text: str, limit: int = 300) -> str:
    """The first non-empty line of `text`, control characters shown as '?', at most `limit` characters."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    line = "".join(c if c.isprintable() else "?" for c in line)
    return line if len(line) <= limit else line[: limit - 3] + "..."


def lenient_text(get) -> str:
    """A text from OpenImageIO, whose bindings raise UnicodeDecodeError when a damaged file put bytes that are not
    UTF-8 in it (an attribute, a channel name, an error message quoting them): decoded with replacement instead."""
    try:
        return get()
    except UnicodeDecodeError as e:
        raw = e.object if isinstance(e.object, (bytes, bytearray)) else b""
        return bytes(raw).decode("utf-8", "replace")


def library_error(source=None, fallback: str = "unknown error", path: str = "") -> str:
    """OpenImageIO's pending error as one printable line (`source.geterror()`, or the global one when `source`
    is None); retrieving it also clears it, so OIIO does not print it to stderr later. Used for every library
    error text in plate.py and matte_io.py. `path`, which the caller's message names already, is cut from it."""
    import OpenImageIO as oiio

    text = lenient_text(source.geterror if source is not None else oiio.geterror)
    if path:
        text = text.replace(f" ({path}):", ":")
    return printable_line(text) or fallback


def channel_names(spec) -> Tuple[str, ...]:
    try:
        return tuple(spec.channelnames)
    except UnicodeDecodeError:  # a damaged name: decode each one leniently
        return tuple(lenient_text(lambda i=i: spec.channel_name(i)) for i in range(spec.nchannels))


def _string_attribute(spec, name: str) -> str:
    return lenient_text(lambda: spec.get_string_attribute(name))


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
        return cls(
            tuple(int(v) for v in doc["display"]),
            tuple(int(v) for v in doc["data"]),
            float(doc.get("pixel_aspect", 1.0)),
        )


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
        raise MatteBridgeError(
            f"{path}: unreadable or corrupt image ({library_error(fallback='unknown format', path=path)})"
        )
    return inp


def _fail(path: str, inp, what: str) -> MatteBridgeError:
    """`path: what (the library's reason)`: clears the input's and the global pending errors."""
    reason, other = library_error(inp, fallback="", path=path), library_error(fallback="", path=path)
    return MatteBridgeError(f"{path}: {what} ({reason or other or 'read failed'})")


def _subimage_specs(inp) -> List[object]:
    specs = []
    while inp.seek_subimage(len(specs), 0):
        specs.append(inp.spec())
    return specs


def _part_name(spec, index: int) -> str:
    return _string_attribute(spec, "name") or _string_attribute(spec, "oiio:subimagename") or f"part{index}"


def _find(names: Sequence[str], prefix: str, wanted: Sequence[str]) -> Optional[Tuple[int, ...]]:
    lookup = {n.lower(): i for i, n in enumerate(names)}
    found = [lookup.get((prefix + w).lower()) for w in wanted]
    return None if None in found else tuple(found)


def _layers(specs) -> List[str]:
    out = []
    for i, spec in enumerate(specs):
        out.append(_part_name(spec, i))
        out += sorted({n.rsplit(".", 1)[0] for n in channel_names(spec) if "." in n} - set(out))
    return out


def _choose(path: str, specs, layer: Optional[str]) -> _Source:
    if layer is None:
        spec = specs[0]
        for prefix in ("", "rgba.", "rgb."):
            for wanted in (("R", "G", "B"), ("Y",)):
                idx = _find(channel_names(spec), prefix, wanted)
                if idx:
                    return _Source(0, idx, spec)
        if spec.nchannels in (1, 3):
            return _Source(0, tuple(range(spec.nchannels)), spec)
        raise MatteBridgeError(
            f"{path}: no R,G,B or Y channels in the first part; pick one with --layer "
            f"(layers: {printable_line(', '.join(_layers(specs)))})"
        )
    for i, spec in enumerate(specs):  # a part of a multi-part file, by name
        if _part_name(spec, i) == layer:
            return _in_part(path, specs, i)
    for i, spec in enumerate(specs):  # a layer inside a part: layer.R, layer.G, layer.B (or layer.Y)
        for wanted in (("R", "G", "B"), ("Y",)):
            idx = _find(channel_names(spec), layer + ".", wanted)
            if idx:
                return _Source(i, idx, spec)
    raise MatteBridgeError(f"{path}: no layer {layer!r} (layers: {printable_line(', '.join(_layers(specs)))})")


def _in_part(path: str, specs, index: int) -> _Source:
    src = _choose(path, [specs[index]], None)
    return _Source(index, src.channels, specs[index])


def _checked(path: str, spec):
    """`spec`, once its windows are ones a frame can have: a damaged header must not make us allocate terabytes."""
    for name, w, h in (("data", spec.width, spec.height), ("display", spec.full_width, spec.full_height)):
        if not (0 < w <= MAX_SIDE and 0 < h <= MAX_SIDE and w * h <= MAX_PIXELS):
            raise MatteBridgeError(f"{path}: {name} window {w}x{h} is not a plausible frame size (damaged header?)")
    if spec.nchannels < 1:
        raise MatteBridgeError(f"{path}: no channels (damaged header?)")
    return spec


def geometry_of(spec) -> Geometry:
    aspect = spec.get_float_attribute("PixelAspectRatio", 1.0) or 1.0
    if not (aspect == aspect and 0 < aspect < float("inf")):
        aspect = 1.0  # a damaged or absurd ratio reads as square pixels
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
        return geometry_of(_checked(path, src.spec))
    finally:
        inp.close()


def read_plate(path: str, layer: Optional[str] = None) -> Plate:
    inp = _open(path)
    try:
        src = _choose(path, _subimage_specs(inp), layer)
        _checked(path, src.spec)
        lo, hi = min(src.channels), max(src.channels) + 1
        pixels = inp.read_image(src.subimage, 0, lo, hi, "float")
        if pixels is None:
            raise _fail(path, inp, "corrupt or truncated image data")
        pixels = np.asarray(pixels, dtype=np.float32).reshape(src.spec.height, src.spec.width, hi - lo)
        if list(src.channels) != list(range(lo, hi)):  # a pick copies; keep it interleaved, as every reader wants
            pixels = np.ascontiguousarray(pixels[:, :, [c - lo for c in src.channels]])
        if pixels.shape[2] == 1:
            pixels = np.repeat(pixels, 3, axis=2)
        fmt = str(src.spec.format)
        return Plate(
            path=path,
            pixels=make_finite(pixels),
            geometry=geometry_of(src.spec),
            colorspace=_string_attribute(src.spec, "oiio:ColorSpace"),
            is_float=fmt in ("half", "float", "double"),
        )
    finally:
        inp.close()


def read_mask(path: str) -> Tuple[np.ndarray, Geometry]:
    """A mask prompt image: its alpha, or its only channel, over its data window."""
    inp = _open(path)
    try:
        spec = _checked(path, inp.spec())
        names = [n.lower() for n in channel_names(spec)]
        if "a" in names:
            ch = names.index("a")
        elif spec.nchannels == 1:
            ch = 0
        else:
            raise MatteBridgeError(
                f"{path}: a mask needs an alpha channel or a single channel "
                f"(has {printable_line(', '.join(channel_names(spec)))})"
            )
        pixels = inp.read_image(0, 0, ch, ch + 1, "float")
        if pixels is None:
            raise _fail(path, inp, "corrupt or truncated image data")
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
        out[y0 - dy : y1 - dy, x0 - dx : x1 - dx] = pixels[y0 - y : y1 - y, x0 - x : x1 - x]
    return out
