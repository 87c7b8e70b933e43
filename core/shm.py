"""Frames through shared memory on the same host: the client writes pixels into a named segment it owns,
the server copies them out and lets go at once (so nothing of the client's outlives its request)."""
from __future__ import annotations

import sys
from multiprocessing import shared_memory
from typing import Any, Optional

import numpy as np

from .protocol import ProtocolError, check_layout


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


def read_shared(desc: Any) -> np.ndarray:
    """The server side: a copy of the described array from the client's segment."""
    if not isinstance(desc, dict) or not isinstance(desc.get("name"), str):
        raise ProtocolError("bad_field", "shm: expected {name, dtype, shape, offset}")
    dtype, shape, offset = desc.get("dtype"), desc.get("shape"), desc.get("offset", 0)
    nbytes = check_layout(dtype, shape, "shm")
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise ProtocolError("bad_field", "shm: offset must be an integer >= 0")
    try:
        segment = _attach(desc["name"])
    except (FileNotFoundError, ValueError, OSError) as e:
        raise ProtocolError("not_found", f"shm: segment {desc['name']!r} cannot be opened ({e})") from None
    try:
        if offset + nbytes > segment.size:
            raise ProtocolError("bad_buffer", f"shm: {dtype} {shape} at offset {offset} needs {offset + nbytes} bytes, "
                                              f"segment {desc['name']!r} has {segment.size}")
        view = np.ndarray(shape, dtype, buffer=segment.buf, offset=offset)
        out = view.copy()
        del view
        return out
    finally:
        segment.close()
