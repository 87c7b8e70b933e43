"""A STAND-IN for DaVinci Resolve Studio's Python scripting API — not Resolve.

It implements only the documented calls the MatteBridge script uses (Resolve's scripting README, the
Resolve 19/20 API listing), with the documented signatures and return types, and raises on any other
attribute, so the script cannot come to depend on something untested here:

  Resolve.GetProjectManager() -> ProjectManager        Resolve.GetMediaStorage() -> MediaStorage
  ProjectManager.GetCurrentProject() -> Project
  Project.GetCurrentTimeline() -> Timeline             Project.GetMediaPool() -> MediaPool
  Timeline.GetCurrentVideoItem() -> TimelineItem       Timeline.GetCurrentTimecode() -> str
  Timeline.GetSetting(settingName) -> str
  TimelineItem.GetName() / GetMediaPoolItem() / GetStart(subframe) / GetLeftOffset(subframe) / GetDuration(subframe)
  MediaPoolItem.GetName() / GetClipProperty(propertyName)
  MediaStorage.AddClipMattesToMediaPool(MediaPoolItem, [paths], stereoEye) -> Bool
  MediaPool.GetClipMatteList(MediaPoolItem) -> [paths]
  MediaPool.DeleteClipMattes(MediaPoolItem, [paths]) -> Bool

What it assumes where the documentation is silent (each is on docs/resolve.md's manual checklist):
GetClipMatteList returns the paths exactly as they were added; AddClipMattesToMediaPool fails (False) when a
file does not exist; an image sequence's "File Path" reads `name.[first-last].ext` (as OpenPype's Resolve
integration parses it); item positions are absolute timeline frames and GetLeftOffset counts source frames.
"""
from __future__ import annotations

import os
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
    def __init__(self, name: str, mpi: Optional[MediaPoolItem], start: int, duration: int, left_offset: int):
        self._name, self._mpi = name, mpi
        self._start, self._duration, self._left = start, duration, left_offset

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
            raise NotImplementedError(f"stand-in Timeline.GetSetting({settingName!r}): only timelineFrameRate is modelled")
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
    def AddClipMattesToMediaPool(self, MediaPoolItem: MediaPoolItem, paths: List[str], stereoEye: Optional[str] = None) -> bool:
        self._log("AddClipMattesToMediaPool", MediaPoolItem, list(paths), stereoEye)
        if not isinstance(paths, list) or not paths or not all(os.path.isfile(p) for p in paths):
            return False
        if stereoEye not in (None, "left", "right"):
            return False
        MediaPoolItem.mattes.extend(p for p in paths if p not in MediaPoolItem.mattes)
        return True


class Project(StandIn):
    def __init__(self, timeline: Optional[Timeline]):
        self._timeline, self._pool = timeline, MediaPool()

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


def resolve_with_clip(file_path: Optional[str], timecode: str, start: int, duration: int, left_offset: int = 0,
                      fps: str = "24", name: str = "A001_C002") -> Resolve:
    """A Resolve whose current timeline has one video clip under the playhead (file_path None: not file-based)."""
    mpi = None if file_path is None else MediaPoolItem(name, {"File Path": file_path, "Clip Name": name})
    item = TimelineItem(name, mpi, start, duration, left_offset)
    return Resolve(Project(Timeline(item, timecode, fps)))
