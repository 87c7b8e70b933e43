"""A STAND-IN for DaVinci Resolve Studio's Python scripting API — not Resolve.

It implements only the documented calls the MatteBridge script uses (Resolve's scripting README, the
Resolve 19/20 API listing), with the documented signatures and return types, and raises on any other
attribute, so the script cannot come to depend on something untested here:

  Resolve.GetProjectManager() -> ProjectManager        Resolve.GetMediaStorage() -> MediaStorage
  ProjectManager.GetCurrentProject() -> Project
  Project.GetCurrentTimeline() -> Timeline             Project.GetMediaPool() -> MediaPool
  Timeline.GetCurrentVideoItem() -> TimelineItem       Timeline.GetCurrentTimecode() -> str
  Timeline.GetSetting(settingName) -> str              Project.GetSetting(settingName) -> str
  TimelineItem.GetName() / GetMediaPoolItem() / GetStart(subframe) / GetLeftOffset(subframe) / GetDuration(subframe)
  TimelineItem.GetSourceStartFrame() -> int (19.0.2+)
  MediaPoolItem.GetName() / GetClipProperty(propertyName)
  MediaStorage.AddClipMattesToMediaPool(MediaPoolItem, [paths], stereoEye) -> Bool
  MediaPool.GetClipMatteList(MediaPoolItem) -> [paths]
  MediaPool.DeleteClipMattes(MediaPoolItem, [paths]) -> Bool

What it assumes where the documentation is silent (each is on docs/resolve.md's manual checklist):
GetClipMatteList returns the paths exactly as they were added; AddClipMattesToMediaPool fails (False) when a
file does not exist; an image sequence's "File Path" reads `name.[first-last].ext` (as OpenPype's Resolve
integration parses it); item positions are absolute timeline frames.

Where Resolve is less kind than a naive fake, so is this (docs/resolve.md lists each for a real-Resolve check):
- a sequence with missing frames reads `name.[1001-1050,1052-1100].exr` (`sequence_file_path` builds it
  from the files on disk);
- `Timeline.GetSetting("timelineFrameRate")` may be "" (then the project's setting holds the rate);
- GetLeftOffset and GetDuration count timeline frames; GetSourceStartFrame counts source frames (the clip's
  own numbering, e.g. 1003 for the third frame of a sequence starting at 1001), which differ when the clip's
  FPS is not the timeline's.
"""

from __future__ import annotations

import os
import re
from typing import Dict, List, Optional


class StandIn:
    """Any attribute not defined by a subclass is an API call the stand-in does not offer: raise."""

    calls: List[tuple] = []  # (class, method, args) of every documented call made, in order

    def __getattr__(self, name):
        raise NotImplementedError(f"stand-in {type(self).__name__}.{name}: not a call the MatteBridge script may use")

    def _log(self, method: str, *args) -> None:
        StandIn.calls.append((type(self).__name__, method, args))


class MediaPoolItem(StandIn):
    def __init__(self, name: str, properties: Dict[str, str]):
        self._name, self._properties = name, dict(properties)
        self.mattes: List[str] = []

    def GetName(self) -> str:
        self._log("GetName")
        return self._name

    def GetClipProperty(self, propertyName: Optional[str] = None):
        self._log("GetClipProperty", propertyName)
        if propertyName is None:
            return dict(self._properties)
        return self._properties.get(propertyName, "")  # "an invalid key will return a trivial result"


class TimelineItem(StandIn):
    def __init__(
        self,
        name: str,
        mpi: Optional[MediaPoolItem],
        start: int,
        duration: int,
        left_offset: int,
        source_start: Optional[int] = None,
    ):
        self._name, self._mpi = name, mpi
        self._start, self._duration, self._left = start, duration, left_offset  # timeline frames
        self._source_start = source_start  # source frames

    def GetSourceStartFrame(self) -> int:
        self._log("GetSourceStartFrame")
        return self._source_start

    def GetName(self) -> str:
        self._log("GetName")
        return self._name

    def GetMediaPoolItem(self) -> Optional[MediaPoolItem]:
        self._log("GetMediaPoolItem")
        return self._mpi

    def GetStart(self, subframe_precision: bool = False) -> int:
        self._log("GetStart", subframe_precision)
        return self._start

    def GetDuration(self, subframe_precision: bool = False) -> int:
        self._log("GetDuration", subframe_precision)
        return self._duration

    def GetLeftOffset(self, subframe_precision: bool = False) -> int:
        self._log("GetLeftOffset", subframe_precision)
        return self._left


class Timeline(StandIn):
    def __init__(self, item: Optional[TimelineItem], timecode: str, fps: str = "24"):
        """fps "" : what Resolve may answer for the timeline's own setting (the project's is then used)."""
        self._item, self._timecode, self._fps = item, timecode, fps

    def GetCurrentVideoItem(self) -> Optional[TimelineItem]:
        self._log("GetCurrentVideoItem")
        return self._item

    def GetCurrentTimecode(self) -> str:
        self._log("GetCurrentTimecode")
        return self._timecode

    def GetSetting(self, settingName: str) -> str:
        self._log("GetSetting", settingName)
        if settingName != "timelineFrameRate":
            raise NotImplementedError(
                f"stand-in Timeline.GetSetting({settingName!r}): only timelineFrameRate is modelled"
            )
        return self._fps


class MediaPool(StandIn):
    def GetClipMatteList(self, MediaPoolItem: MediaPoolItem) -> List[str]:
        self._log("GetClipMatteList", MediaPoolItem)
        return list(MediaPoolItem.mattes)

    def DeleteClipMattes(self, MediaPoolItem: MediaPoolItem, paths: List[str]) -> bool:
        self._log("DeleteClipMattes", MediaPoolItem, list(paths))
        if not isinstance(paths, list) or any(p not in MediaPoolItem.mattes for p in paths):
            return False
        MediaPoolItem.mattes = [p for p in MediaPoolItem.mattes if p not in paths]
        return True


class MediaStorage(StandIn):
    def AddClipMattesToMediaPool(
        self, MediaPoolItem: MediaPoolItem, paths: List[str], stereoEye: Optional[str] = None
    ) -> bool:
        self._log("AddClipMattesToMediaPool", MediaPoolItem, list(paths), stereoEye)
        if not isinstance(paths, list) or not paths or not all(os.path.isfile(p) for p in paths):
            return False
        if stereoEye not in (None, "left", "right"):
            return False
        MediaPoolItem.mattes.extend(p for p in paths if p not in MediaPoolItem.mattes)
        return True


class Project(StandIn):
    def __init__(self, timeline: Optional[Timeline], fps: str = "24"):
        self._timeline, self._pool, self._fps = timeline, MediaPool(), fps

    def GetSetting(self, settingName: str) -> str:
        self._log("GetSetting", settingName)
        if settingName != "timelineFrameRate":
            raise NotImplementedError(
                f"stand-in Project.GetSetting({settingName!r}): only timelineFrameRate is modelled"
            )
        return self._fps

    def GetCurrentTimeline(self) -> Optional[Timeline]:
        self._log("GetCurrentTimeline")
        return self._timeline

    def GetMediaPool(self) -> MediaPool:
        self._log("GetMediaPool")
        return self._pool


class ProjectManager(StandIn):
    def __init__(self, project: Optional[Project]):
        self._project = project

    def GetCurrentProject(self) -> Optional[Project]:
        self._log("GetCurrentProject")
        return self._project


class Resolve(StandIn):
    def __init__(self, project: Optional[Project]):
        self._manager, self._storage = ProjectManager(project), MediaStorage()

    def GetProjectManager(self) -> ProjectManager:
        self._log("GetProjectManager")
        return self._manager

    def GetMediaStorage(self) -> MediaStorage:
        self._log("GetMediaStorage")
        return self._storage


def resolve_with_clip(
    file_path: Optional[str],
    timecode: str,
    start: int,
    duration: int,
    source_offset: int = 0,
    fps: str = "24",
    name: str = "A001_C002",
    clip_fps: Optional[str] = None,
    project_fps: str = "24",
) -> Resolve:
    """A Resolve whose current timeline has one video clip under the playhead (file_path None: not file-based).
    source_offset: source frames trimmed off the clip's head; clip_fps: the clip's FPS (default: the timeline's)."""
    clip_fps = clip_fps or fps or project_fps or "24"
    mpi = (
        None if file_path is None else MediaPoolItem(name, {"File Path": file_path, "Clip Name": name, "FPS": clip_fps})
    )
    m = re.search(r"\[(-?\d+)", os.path.basename(file_path or ""))
    first = int(m.group(1)) if m else 0
    step = float(clip_fps) / float(fps or project_fps or clip_fps)  # source frames per timeline frame
    item = TimelineItem(name, mpi, start, duration, int(source_offset / step), first + source_offset)
    return Resolve(Project(Timeline(item, timecode, fps), project_fps))


def sequence_file_path(pattern: str) -> str:
    """What Resolve's "File Path" reads for the files on disk matching `pattern` (`####` = the frame number):
    `name.[1001-1100].exr`, or with missing frames `name.[1001-1050,1052-1100].exr`."""
    folder, base = os.path.split(pattern)
    head, hashes, tail = re.match(r"(.*?)(#+)(.*)$", base).groups()
    found = sorted(
        int(m.group(1))
        for m in (
            re.fullmatch(re.escape(head) + r"(-?\d{%d,})" % len(hashes) + re.escape(tail), n)
            for n in os.listdir(folder)
        )
        if m
    )
    ranges, width = [], len(hashes)
    for f in found:
        if ranges and f == ranges[-1][1] + 1:
            ranges[-1][1] = f
        else:
            ranges.append([f, f])
    text = ",".join("%0*d-%0*d" % (width, a, width, b) for a, b in ranges)
    return os.path.join(folder, f"{head}[{text}]{tail}")
