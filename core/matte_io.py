"""Writing matte EXRs in the plate's exact geometry, atomically (temp file + rename)."""
from __future__ import annotations

import json
import os
import tempfile
from typing import Dict, Sequence

import numpy as np

from .errors import MatteBridgeError
from .plate import Geometry

METADATA_PREFIX = "mattebridge/"


def write_matte(path: str, channels: Dict[str, np.ndarray], geometry: Geometry, metadata: Dict[str, object],
                pixel_type: str = "half", standard_metadata: Dict[str, str] = None) -> None:
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
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp.exr", dir=folder)
    os.close(fd)
    try:
        out = oiio.ImageOutput.create(tmp)
        if out is None or not out.open(tmp, spec):
            raise MatteBridgeError(f"{path}: cannot write ({oiio.geterror().strip() or 'open failed'})")
        ok = out.write_image(pixels)
        ok = out.close() and ok
        if not ok:
            raise MatteBridgeError(f"{path}: cannot write ({out.geterror().strip() or 'write failed'})")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_metadata(path: str) -> Dict[str, str]:
    """The mattebridge/* header attributes of a matte (empty when unreadable)."""
    import OpenImageIO as oiio

    inp = oiio.ImageInput.open(path)
    if inp is None:
        return {}
    try:
        return {a.name[len(METADATA_PREFIX):]: a.value for a in inp.spec().extra_attribs
                if a.name.startswith(METADATA_PREFIX)}
    finally:
        inp.close()


def read_channels(path: str, names: Sequence[str]) -> np.ndarray:
    """(data h, data w, len(names)) float32 of the named channels of a matte."""
    import OpenImageIO as oiio

    inp = oiio.ImageInput.open(path)
    if inp is None:
        raise MatteBridgeError(f"{path}: cannot read ({oiio.geterror().strip() or 'open failed'})")
    try:
        spec = inp.spec()
        missing = [n for n in names if n not in spec.channelnames]
        if missing:
            raise MatteBridgeError(f"{path}: no channel {', '.join(missing)} (has {', '.join(spec.channelnames)})")
        pixels = inp.read_image(0, 0, 0, spec.nchannels, "float")
        if pixels is None:
            raise MatteBridgeError(f"{path}: cannot read pixels ({inp.geterror().strip()})")
        return np.ascontiguousarray(pixels.reshape(spec.height, spec.width, -1)[..., [spec.channelnames.index(n) for n in names]])
    finally:
        inp.close()
