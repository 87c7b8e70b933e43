"""Frames through shared memory on the same host: the client writes pixels into a named segment it owns,
the server converts them out and lets go at once (so nothing of the client's outlives its request)."""

from __future__ import annotations

import hashlib
import os
import stat
import sys
from multiprocessing import shared_memory
from typing import Any, Callable, NamedTuple, Optional, Tuple

import numpy as np

from mattebridge.core.wire.protocol import ProtocolError, check_layout

try:
    import _posixshmem  # the C module behind multiprocessing.shared_memory on POSIX
except ImportError:  # Windows
    _posixshmem = None

_BAND_BYTES = 1 << 18  # read, hashed and converted a band of about this many bytes at a time


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

    The claim is checked against the segment's real size before the RGB array is allocated. The segment is then
    read through its file descriptor (pread), a band of rows at a time, never mapped: the client can shrink it at
    any moment, and a mapping read past its new end kills this process (SIGBUS). A short read is `bad_buffer`."""
    if _posixshmem is None:
        return _read_mapped_rgb(layout)
    try:
        # read-only; shm_open adds O_NOFOLLOW and refuses a name with a slash inside, as attaching did
        fd = _posixshmem.shm_open(layout.name if layout.name.startswith("/") else "/" + layout.name, os.O_RDONLY)
    except (FileNotFoundError, ValueError, OSError) as e:
        raise ProtocolError("not_found", f"shm: segment {layout.name!r} cannot be opened ({e})") from None
    try:
        try:
            info = os.fstat(fd)
        except OSError as e:
            raise ProtocolError("bad_buffer", f"shm: segment {layout.name!r} cannot be read ({e})") from None
        _check_size(layout, info.st_size if stat.S_ISREG(info.st_mode) else 0)
        return _read_rgb(lambda dst, pos: _pread_exactly(fd, dst, pos, layout.name), layout)
    finally:
        os.close(fd)


def _read_mapped_rgb(layout: SharedLayout) -> Tuple[np.ndarray, str]:
    """Windows: a named section keeps the size it was created with, so a mapping of it cannot lose pages."""
    try:
        segment = _attach(layout.name)
    except (FileNotFoundError, ValueError, OSError) as e:
        raise ProtocolError("not_found", f"shm: segment {layout.name!r} cannot be opened ({e})") from None
    try:
        _check_size(layout, segment.size)

        def copy(dst: memoryview, pos: int) -> None:
            dst[:] = segment.buf[pos : pos + len(dst)]

        return _read_rgb(copy, layout)
    finally:
        segment.close()


def _check_size(layout: SharedLayout, size: int) -> None:
    end = layout.offset + layout.nbytes
    if end > size:
        raise ProtocolError(
            "bad_buffer",
            f"shm: {layout.dtype} {list(layout.shape)} at offset {layout.offset} "
            f"needs {end} bytes, segment {layout.name!r} has {size}",
        )


def _pread_exactly(fd: int, dst: memoryview, pos: int, name: str) -> None:
    """Fills dst from the segment at pos, or raises bad_buffer (the segment shrank, or the read failed)."""
    done = 0
    while done < len(dst):
        try:
            got = os.preadv(fd, [dst[done:]], pos + done)
        except OSError as e:
            raise ProtocolError("bad_buffer", f"shm: segment {name!r} cannot be read ({e})") from None
        if got <= 0:
            raise ProtocolError(
                "bad_buffer", f"shm: segment {name!r} shrank to {pos + done} bytes while it was being read"
            )
        done += got


def _read_rgb(read: Callable[[memoryview, int], None], layout: SharedLayout) -> Tuple[np.ndarray, str]:
    """The described pixels as float32 RGB (see to_rgb32), read (`read(dst, position)` fills dst) and hashed a band
    of rows at a time."""
    h, w = layout.shape[:2]
    c = layout.shape[2] if len(layout.shape) == 3 else 1
    dtype = np.dtype(layout.dtype)
    row_bytes = w * c * dtype.itemsize
    rows = max(1, _BAND_BYTES // row_bytes)
    out = np.empty((h, w, 3), np.float32)
    # the same hash put_frame gives the same pixels sent inline (the resume stamp)
    digest = hashlib.sha1()
    direct = dtype == np.float32 and c == 3  # read straight into the result
    scratch = None if direct else np.empty((min(rows, h), w, c), dtype)
    for y in range(0, h, rows):
        n = min(rows, h - y)
        band = out[y : y + n]
        src = band if direct else scratch[:n]
        raw = memoryview(src.reshape(-1)).cast("B")
        read(raw, layout.offset + y * row_bytes)
        digest.update(raw)
        _fill_rgb32(band, src)
    return out, digest.hexdigest()


def to_rgb32(pixels: np.ndarray) -> np.ndarray:
    """(h, w[, 1|3|4]) pixels -> a new float32 (h, w, 3) array: one channel repeated, alpha dropped, NaN -> 0 and
    +-inf -> +-65504 (half's range). Converted a band of rows at a time, so no frame-sized temporary exists."""
    h, w = pixels.shape[:2]
    src = pixels[..., None] if pixels.ndim == 2 else pixels
    out = np.empty((h, w, 3), np.float32)
    rows = max(1, (1 << 20) // w)  # about a megapixel per band
    for y in range(0, h, rows):
        _fill_rgb32(out[y : y + rows], src[y : y + rows])
    return out


def _fill_rgb32(band: np.ndarray, src: np.ndarray) -> None:
    """float32 (n, w, 3) `band` <- (n, w, 1|3|4) `src` (`band` itself when it was read in place): cast, one channel
    repeated, alpha dropped, NaN -> 0 and +-inf -> +-65504 (half's range)."""
    if src is not band:
        band[...] = src[..., :3]  # casts; a single channel broadcasts to three
    np.nan_to_num(band, copy=False, nan=0.0, posinf=65504.0, neginf=-65504.0)
