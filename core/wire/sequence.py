"""Frame ranges and image-sequence path patterns (`name.####.exr`, `name.%04d.exr`, `name.@@@.exr`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mattebridge.core.errors import FieldError

_HASHES = re.compile(r"#+|@+")
_PRINTF = re.compile(r"%(0?)(\d*)d")


@dataclass(frozen=True)
class FrameRange:
    first: int
    last: int

    @classmethod
    def parse(cls, text: str) -> "FrameRange":
        """`1001-1100`, `1001` or negative frames such as `-5--1`."""
        m = re.fullmatch(r"\s*(-?\d+)\s*(?:-\s*(-?\d+)\s*)?", text or "")
        if not m:
            raise FieldError("frames", f": cannot read {text!r}; expected FIRST-LAST, e.g. 1001-1100")
        first = int(m.group(1))
        last = int(m.group(2)) if m.group(2) is not None else first
        if last < first:
            raise FieldError("frames", f": range {text!r} is reversed (last frame {last} < first frame {first})")
        return cls(first, last)

    def __len__(self) -> int:
        return self.last - self.first + 1

    def __iter__(self):
        return iter(range(self.first, self.last + 1))

    def __contains__(self, frame: int) -> bool:
        return self.first <= frame <= self.last

    def __str__(self) -> str:
        return f"{self.first}-{self.last}"


def has_frame_token(pattern: str) -> bool:
    return bool(_HASHES.search(pattern) or _PRINTF.search(pattern))


def frame_path(pattern: str, frame: int) -> str:
    """Expand the frame token of `pattern`; `####` pads to 4 digits, negative frames keep their sign."""
    m = _HASHES.search(pattern)
    if m:
        width = len(m.group(0))
        return pattern[: m.start()] + _pad(frame, width) + pattern[m.end() :]
    m = _PRINTF.search(pattern)
    if m:
        width = int(m.group(2)) if m.group(2) else 0
        return pattern[: m.start()] + _pad(frame, width) + pattern[m.end() :]
    return pattern


def _pad(frame: int, width: int) -> str:
    return ("-" if frame < 0 else "") + str(abs(frame)).zfill(width)
