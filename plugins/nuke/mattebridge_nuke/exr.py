"""A small OpenEXR writer (numpy + zlib) for preview mattes: Nuke's Python has no image library.

Single-part scanline files, HALF or FLOAT channels, ZIP compression (lossless), any display and data
window, pixel aspect and string attributes. Written under a temporary name and renamed, so a Read never
sees half a file. The server writes the tracked mattes itself; this only writes what `clip.prompt`
returns as an array.
"""

import os
import struct
import tempfile
import zlib
from typing import Dict, Optional, Sequence

import numpy as np

MAGIC = 20000630
NO_COMPRESSION, ZIP_COMPRESSION = 0, 3
HALF, FLOAT = 1, 2
ZIP_LINES = 16  # scanlines per ZIP block


def _attr(name: str, kind: str, payload: bytes) -> bytes:
    return name.encode() + b"\0" + kind.encode() + b"\0" + struct.pack("<i", len(payload)) + payload


def _box2i(window: Sequence[int]) -> bytes:
    x, y, w, h = (int(v) for v in window)
    return struct.pack("<4i", x, y, x + w - 1, y + h - 1)


def _zip_block(raw: bytes) -> bytes:
    """OpenEXR's ZIP: bytes split into even/odd halves, delta-coded, then deflated."""
    data = np.frombuffer(raw, np.uint8)
    interleaved = np.concatenate([data[0::2], data[1::2]])
    delta = interleaved.astype(np.int16)
    delta[1:] = (interleaved[1:].astype(np.int16) - interleaved[:-1].astype(np.int16) + 128) & 0xFF
    packed = zlib.compress(delta.astype(np.uint8).tobytes(), 6)
    return packed if len(packed) < len(raw) else raw


def write_exr(
    path: str,
    channels: Dict[str, np.ndarray],
    display: Sequence[int],
    data: Sequence[int],
    pixel_aspect: float = 1.0,
    pixel_type: str = "half",
    attributes: Optional[Dict[str, str]] = None,
    compression: str = "zip",
) -> None:
    """channels: name -> (data h, data w) array over the data window; windows are (x, y, width, height),
    absolute, y down (OpenImageIO's convention, as the server's geometry gives them)."""
    names = sorted(channels)  # OpenEXR stores channels in alphabetical order
    x, y, w, h = (int(v) for v in data)
    for name in names:
        if channels[name].shape != (h, w):
            raise ValueError(f"channel {name}: shape {channels[name].shape} is not the data window's {(h, w)}")
    dtype, code = (np.dtype("<f2"), HALF) if pixel_type == "half" else (np.dtype("<f4"), FLOAT)
    comp = ZIP_COMPRESSION if compression == "zip" else NO_COMPRESSION
    lines = ZIP_LINES if comp == ZIP_COMPRESSION else 1

    chlist = (
        b"".join(n.encode() + b"\0" + struct.pack("<i", code) + b"\0\0\0\0" + struct.pack("<ii", 1, 1) for n in names)
        + b"\0"
    )
    header = (
        b"".join(
            [
                _attr("channels", "chlist", chlist),
                _attr("compression", "compression", bytes([comp])),
                _attr("dataWindow", "box2i", _box2i(data)),
                _attr("displayWindow", "box2i", _box2i(display)),
                _attr("lineOrder", "lineOrder", bytes([0])),
                _attr("pixelAspectRatio", "float", struct.pack("<f", float(pixel_aspect))),
                _attr("screenWindowCenter", "v2f", struct.pack("<ff", 0.0, 0.0)),
                _attr("screenWindowWidth", "float", struct.pack("<f", 1.0)),
            ]
            + [_attr(k, "string", str(v).encode("utf-8")) for k, v in sorted((attributes or {}).items())]
        )
        + b"\0"
    )

    planes = [np.ascontiguousarray(channels[n], dtype=np.float32).astype(dtype) for n in names]
    chunks = []
    for top in range(0, h, lines):
        rows = range(top, min(top + lines, h))
        raw = b"".join(plane[r].tobytes() for r in rows for plane in planes)
        body = _zip_block(raw) if comp == ZIP_COMPRESSION else raw
        chunks.append(struct.pack("<ii", y + top, len(body)) + body)

    prefix = struct.pack("<ii", MAGIC, 2) + header
    offsets, position = [], len(prefix) + 8 * len(chunks)
    for chunk in chunks:
        offsets.append(position)
        position += len(chunk)
    blob = prefix + struct.pack("<%dQ" % len(offsets), *offsets) + b"".join(chunks)

    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    from mattebridge.core.paths import plain_mode

    os.fchmod(fd, plain_mode())  # the comp's other readers (a render farm, a colleague) read it as the umask says
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
