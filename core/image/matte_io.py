"""Writing matte EXRs in the plate's exact geometry, atomically (temp file + rename)."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Dict, Sequence

import numpy as np

from mattebridge.core.errors import MatteBridgeError
from mattebridge.core.image.plate import Geometry, channel_names, lenient_text, library_error, printable_line
from mattebridge.core.paths import plain_mode

METADATA_PREFIX = "mattebridge/"


def write_matte(
    path: str,
    channels: Dict[str, np.ndarray],
    geometry: Geometry,
    metadata: Dict[str, object],
    pixel_type: str = "half",
    standard_metadata: Dict[str, str] = None,
) -> None:
    """One EXR: `channels` (name -> (data h, data w) array) over the data window, ZIP, lossless.

    Written to a temporary name in the same folder and renamed, so readers never see a partial file.
    """
    import OpenImageIO as oiio

    names: Sequence[str] = list(channels)
    x, y, w, h = geometry.data
    spec = oiio.ImageSpec(w, h, len(names), pixel_type)
    spec.x, spec.y = x, y
    spec.full_x, spec.full_y, spec.full_width, spec.full_height = geometry.display
    spec.channelnames = tuple(names)
    spec.attribute("compression", "zip")
    spec.attribute("PixelAspectRatio", float(geometry.pixel_aspect))
    for key, value in metadata.items():
        spec.attribute(METADATA_PREFIX + key, value if isinstance(value, str) else json.dumps(value))
    for key, value in (standard_metadata or {}).items():
        spec.attribute(key, value)
    pixels = np.ascontiguousarray(np.stack([channels[n] for n in names], axis=-1), dtype=np.float32)

    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise MatteBridgeError(f"{path}: cannot create folder ({e.strerror})") from None
    try:
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp.exr", dir=folder)
    except OSError as e:  # a folder this process may not write in
        raise MatteBridgeError(f"{path}: cannot write ({e.strerror})") from None
    os.fchmod(fd, plain_mode())
    os.close(fd)
    try:
        out = oiio.ImageOutput.create(tmp)
        if out is None or not out.open(tmp, spec):
            reason = library_error(out, fallback="", path=tmp) if out is not None else ""
            raise MatteBridgeError(
                f"{path}: cannot write ({reason or library_error(fallback='open failed', path=tmp)})"
            )
        ok = out.write_image(pixels)
        ok = out.close() and ok
        if not ok:
            raise MatteBridgeError(f"{path}: cannot write ({library_error(out, fallback='write failed', path=tmp)})")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_metadata(path: str) -> Dict[str, str]:
    """The mattebridge/* header attributes of a matte (empty when unreadable)."""
    import OpenImageIO as oiio

    inp = oiio.ImageInput.open(path)
    if inp is None:
        library_error()  # retrieved, so OIIO does not print it at exit
        return {}
    try:
        out = {}
        for a in inp.spec().extra_attribs:  # a damaged header's names and values may not be UTF-8
            name = lenient_text(lambda: a.name)
            if name.startswith(METADATA_PREFIX):
                out[name[len(METADATA_PREFIX) :]] = lenient_text(lambda: a.value)
        return out
    finally:
        inp.close()


def read_channels(path: str, names: Sequence[str]) -> np.ndarray:
    """(data h, data w, len(names)) float32 of the named channels of a matte."""
    import OpenImageIO as oiio

    inp = oiio.ImageInput.open(path)
    if inp is None:
        raise MatteBridgeError(f"{path}: cannot read ({library_error(fallback='open failed', path=path)})")
    try:
        spec = inp.spec()
        have = channel_names(spec)
        missing = [n for n in names if n not in have]
        if missing:
            raise MatteBridgeError(f"{path}: no channel {', '.join(missing)} (has {printable_line(', '.join(have))})")
        pixels = inp.read_image(0, 0, 0, spec.nchannels, "float")
        if pixels is None:
            raise MatteBridgeError(
                f"{path}: cannot read pixels ({library_error(inp, fallback='read failed', path=path)})"
            )
        return np.ascontiguousarray(pixels.reshape(spec.height, spec.width, -1)[..., [have.index(n) for n in names]])
    finally:
        inp.close()
