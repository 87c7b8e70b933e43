"""Frames through shared memory on the same host: the client writes pixels into a named segment it owns,
the server converts them out and lets go at once (so nothing of the client's outlives its request)."""

from __future__ import annotations

import hashlib
import sys
from multiprocessing import shared_memory
from typing import Any, NamedTuple, Optional, Tuple

import numpy as np

from mattebridge.core.wire.protocol import ProtocolError, check_layout


def _attach(name: str) -> shared_memory.SharedMemory:
    segment = shared_memory.SharedMemory(name=name)
    if sys.version_info < (3, 13):
        # Before 3.13 attaching registers the segment with this process's resource tracker, which would
        # unlink the client's segment when this process exits. The client owns it.
        from multiprocessing import resource_tracker

        resource_tracker.unregister(segment._name, "shared_memory")
    return segment


class SharedFrames:
    """The client side: one segment, grown when a frame needs more, unlinked on close."""

    def __init__(self):
        self.segment: Optional[shared_memory.SharedMemory] = None

    def put(self, array: np.ndarray) -> dict:
        array = np.ascontiguousarray(array)
        if self.segment is None or self.segment.size < array.nbytes:
            self.close()
            self.segment = shared_memory.SharedMemory(create=True, size=max(array.nbytes, 1))
        np.ndarray(array.shape, array.dtype, buffer=self.segment.buf)[...] = array
        return {"name": self.segment.name, "dtype": array.dtype.name, "shape": list(array.shape), "offset": 0}

    def close(self) -> None:
        if self.segment is not None:
            self.segment.close()
            try:
                self.segment.unlink()
            except FileNotFoundError:
                pass
            self.segment = None


class SharedLayout(NamedTuple):
    name: str
    dtype: str
    shape: Tuple[int, ...]
    offset: int
    nbytes: int

    @property
    def pixels(self) -> int:
        return self.shape[0] * self.shape[1]


def shared_layout(desc: Any) -> SharedLayout:
    """The server side, step 1: a shm description, checked, before anything is opened or allocated."""
    if not isinstance(desc, dict) or not isinstance(desc.get("name"), str):
        raise ProtocolError("bad_field", "shm: expected {name, dtype, shape, offset}")
    dtype, shape, offset = desc.get("dtype"), desc.get("shape"), desc.get("offset", 0)
    nbytes = check_layout(dtype, shape, "shm")
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise ProtocolError("bad_field", "shm: offset must be an integer >= 0")
    return SharedLayout(desc["name"], dtype, tuple(shape), offset, nbytes)


def read_shared_rgb(layout: SharedLayout) -> Tuple[np.ndarray, str]:
    """The server side, step 2: (float32 (h, w, 3) RGB, sha1 of the described bytes) from the client's segment.

    The RGB array is the only copy made: it is filled straight from the shared view. The claim is checked
    against the segment's real size before that allocation."""
    try:
        segment = _attach(layout.name)
    except (FileNotFoundError, ValueError, OSError) as e:
        raise ProtocolError("not_found", f"shm: segment {layout.name!r} cannot be opened ({e})") from None
    try:
        end = layout.offset + layout.nbytes
        if end > segment.size:
            raise ProtocolError(
                "bad_buffer",
                f"shm: {layout.dtype} {list(layout.shape)} at offset {layout.offset} "
                f"needs {end} bytes, segment {layout.name!r} has {segment.size}",
            )
        raw = segment.buf[layout.offset : end]
        view = None
        try:
            # the same hash put_frame gives the same pixels sent inline (the resume stamp)
            stamp = hashlib.sha1(raw).hexdigest()
            view = np.ndarray(layout.shape, layout.dtype, buffer=raw)
            rgb = to_rgb32(view)
        finally:
            del view  # no view may outlive the mapping: close() refuses while one exists
            raw.release()
        return rgb, stamp
    finally:
        segment.close()


def to_rgb32(pixels: np.ndarray) -> np.ndarray:
    """(h, w[, 1|3|4]) pixels -> a new float32 (h, w, 3) array: one channel repeated, alpha dropped, NaN -> 0 and
    +-inf -> +-65504 (half's range). Converted a band of rows at a time, so no frame-sized temporary exists."""
    h, w = pixels.shape[:2]
    src = pixels[..., None] if pixels.ndim == 2 else pixels
    out = np.empty((h, w, 3), np.float32)
    rows = max(1, (1 << 20) // w)  # about a megapixel per band
    for y in range(0, h, rows):
        band = out[y : y + rows]
        band[...] = src[y : y + rows, :, :3]  # casts; a single channel broadcasts to three
        np.nan_to_num(band, copy=False, nan=0.0, posinf=65504.0, neginf=-65504.0)
    return out
