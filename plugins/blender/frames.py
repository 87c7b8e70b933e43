"""An image strip's files as one numbered sequence, and timeline frame <-> file frame (no bpy here).

Blender shows element `i` of an image strip at timeline frame `frame_start + i - animation_offset_start`
(reversed strips count from the other end), inside the handles `[frame_final_start, frame_final_end)`.
The server and the prompts speak in *file* frame numbers (`plate.1001.exr` is frame 1001).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import List, Optional, Sequence

from .errors import PluginError

_NUMBERED = re.compile(r"^(.*?)(\d+)(\.[A-Za-z0-9]+)$")


@dataclass(frozen=True)
class FileSequence:
    """`pattern` (absolute, with a `#` frame token) covering `first..last`, one file per element."""

    directory: str
    name_pattern: str  # e.g. plate.####.exr, or the bare file name of a still without a number
    frames: tuple  # file frame number of each element, in element order

    @property
    def pattern(self) -> str:
        return os.path.join(self.directory, self.name_pattern)

    @property
    def first(self) -> int:
        return self.frames[0]

    @property
    def last(self) -> int:
        return self.frames[-1]

    @property
    def range_text(self) -> str:
        return f"{self.first}-{self.last}"

    def element_of(self, file_frame: int) -> Optional[int]:
        index = file_frame - self.first
        return index if 0 <= index < len(self.frames) else None

    def file_name(self, file_frame: int, name_pattern: Optional[str] = None) -> str:
        """The file name of `file_frame` in `name_pattern` (default: this sequence's own)."""
        return expand(name_pattern or self.name_pattern, file_frame)


def expand(name_pattern: str, frame: int) -> str:
    m = re.search(r"#+", name_pattern)
    if not m:
        return name_pattern
    return name_pattern[: m.start()] + str(frame).zfill(len(m.group(0))) + name_pattern[m.end() :]


def file_sequence(directory: str, filenames: Sequence[str]) -> FileSequence:
    """The strip's element file names as one numbered, gap-free sequence (what the server opens)."""
    if not filenames:
        raise PluginError("the strip has no image files")
    if len(filenames) == 1 and not _NUMBERED.match(filenames[0]):
        return FileSequence(directory, filenames[0].replace("#", "_"), (1,))
    parts = [_NUMBERED.match(name) for name in filenames]
    if not all(parts):
        bad = next(name for name, m in zip(filenames, parts) if not m)
        raise PluginError(f"file {bad!r} has no frame number: the strip must be a numbered image sequence")
    prefix, suffix = parts[0].group(1), parts[0].group(3)
    if any(m.group(1) != prefix or m.group(3) != suffix for m in parts):
        raise PluginError(
            f"the strip mixes files of different sequences ({filenames[0]!r} ... "
            f"{next(n for n, m in zip(filenames, parts) if m.group(1) != prefix or m.group(3) != suffix)!r})"
        )
    numbers = [int(m.group(2)) for m in parts]
    for a, b in zip(numbers, numbers[1:]):
        if b != a + 1:
            raise PluginError(
                f"the strip's files are not consecutive frames ({a} is followed by {b}); "
                "MatteBridge needs one gap-free numbered sequence"
            )
    width = min(len(m.group(2)) for m in parts)
    name_pattern = prefix + "#" * width + suffix
    for name, n in zip(filenames, numbers):
        if expand(name_pattern, n) != name:
            raise PluginError(f"file {name!r}: inconsistent frame-number padding in the strip's files")
    return FileSequence(directory, name_pattern, tuple(numbers))


@dataclass(frozen=True)
class StripTiming:
    """What Blender uses to pick an element for a timeline frame (image strips without retiming)."""

    frame_start: int
    final_start: int  # first visible timeline frame (left handle)
    final_end: int  # one past the last visible timeline frame (right handle)
    elements: int
    anim_offset_start: int = 0
    anim_offset_end: int = 0
    reverse: bool = False

    @property
    def content_length(self) -> int:
        return max(0, self.elements - self.anim_offset_start - self.anim_offset_end)

    def element_at(self, timeline_frame: int) -> Optional[int]:
        """Element index shown at `timeline_frame`, None outside the strip's handles."""
        if not (self.final_start <= timeline_frame < self.final_end) or self.content_length == 0:
            return None
        i = min(max(timeline_frame - self.frame_start, 0), self.content_length - 1)
        if self.reverse:
            i = self.content_length - 1 - i
        return i + self.anim_offset_start

    def timeline_frame_of(self, element: int) -> Optional[int]:
        """Timeline frame that shows `element`, None when the handles hide it."""
        i = element - self.anim_offset_start
        if not (0 <= i < self.content_length):
            return None
        if self.reverse:
            i = self.content_length - 1 - i
        frame = self.frame_start + i
        return frame if self.final_start <= frame < self.final_end else None

    def visible_elements(self) -> List[int]:
        found = {self.element_at(f) for f in range(self.final_start, self.final_end)}
        return sorted(e for e in found if e is not None)


def timeline_files(timing: StripTiming, sequence: FileSequence) -> List[int]:
    """File frame shown at each visible timeline frame, in timeline order (the matte strip's elements)."""
    frames = []
    for f in range(timing.final_start, timing.final_end):
        element = timing.element_at(f)
        if element is None or element >= len(sequence.frames):
            raise PluginError(f"timeline frame {f} shows no file of the strip")
        frames.append(sequence.frames[element])
    if not frames:
        raise PluginError("the strip shows no frames")
    return frames
