"""Prompts as Blender custom properties on the strip, and back (no bpy here).

A strip's prompts live in its custom property ``mattebridge`` (saved with the .blend)::

    {"version": 1,
     "objects": {"main": {"1001": {"points": [x, y, 1.0,  x, y, 0.0], "box": [x0, y0, x1, y1]}}}}

Points are flat (x, y, positive) triples; coordinates are display-window pixels of the plate, origin top-left,
y down (docs/architecture.md §3) -- the same numbers as the prompts JSON (docs/prompts.md), which
:func:`to_prompts` builds through :class:`mattebridge.core.wire.prompts.Prompts` so it is validated the same way.
Frame keys are the plate's file frame numbers, as strings (custom-property keys must be strings).
"""

from __future__ import annotations

from typing import Mapping, Optional

from mattebridge.core.wire.prompts import Prompts
from mattebridge.core.wire.prompts import check_object_name as check_project_name

from .errors import PluginError

KEY = "mattebridge"
VERSION = 1
# Object names: the project's one grammar (mattebridge.core.wire.prompts.OBJECT_NAME, from the bundled wheel: 1-64
# letters, digits, _ . -, not starting with .), and at most 63 characters here because they are keys of the
# strip's custom property and Blender limits IDProperty keys to 63.
MAX_NAME = 63


def to_prompts(doc: Optional[Mapping]) -> Prompts:
    """The stored custom property (as plain dicts/lists, e.g. ``strip[KEY].to_dict()``) as Prompts."""
    prompts = Prompts()
    if not doc:
        return prompts
    version = doc.get("version", VERSION)
    if not isinstance(version, int) or version > VERSION:
        raise PluginError(f"the strip's prompts were saved by a newer MatteBridge (version {version})")
    for obj, per in (doc.get("objects") or {}).items():
        for frame_key, entry in (per or {}).items():
            try:
                frame = int(frame_key)
            except ValueError:
                raise PluginError(f"stored prompts: object {obj!r} has a bad frame key {frame_key!r}") from None
            flat = list(entry.get("points") or [])
            if len(flat) % 3:
                raise PluginError(
                    f"stored prompts: object {obj!r}, frame {frame}: points are not (x, y, positive) triples"
                )
            for i in range(0, len(flat), 3):
                prompts.add_point(obj, frame, flat[i], flat[i + 1], bool(flat[i + 2] >= 0.5))
            box = entry.get("box")
            if box is not None and len(box) == 4:
                prompts.set_box(obj, frame, box)
    return prompts


def to_store(prompts: Prompts) -> dict:
    """Prompts as the custom property value (only frames that hold something)."""
    objects = {}
    for obj, per in prompts.objects.items():
        frames = {}
        for frame in sorted(per):
            fp = per[frame]
            entry = {}
            if fp.points:
                entry["points"] = [v for p in fp.points for v in (float(p.x), float(p.y), 1.0 if p.positive else 0.0)]
            if fp.box is not None:
                entry["box"] = [float(v) for v in fp.box]
            if entry:
                frames[str(frame)] = entry
        if frames:
            objects[obj] = frames
    return {"version": VERSION, "objects": objects}


def check_object_name(obj: str) -> str:
    """`obj` if it is a valid object name, else a one-line error naming it (as typed: nothing is trimmed)."""
    obj = check_project_name(obj)
    if len(obj) > MAX_NAME:
        raise PluginError(
            f"object name {obj!r}: at most {MAX_NAME} characters in Blender (the prompts "
            f"are stored under it as a custom-property key, which Blender limits to {MAX_NAME})"
        )
    return obj


def add_point(prompts: Prompts, obj: str, frame: int, x: float, y: float, positive: bool = True) -> None:
    prompts.add_point(check_object_name(obj), frame, x, y, positive)


def set_box(prompts: Prompts, obj: str, frame: int, box) -> None:
    """A box for `obj` on `frame`, replacing the one already there (one box per object and frame)."""
    obj = check_object_name(obj)
    x0, y0, x1, y1 = (float(v) for v in box)
    box = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
    fp = prompts.on(obj, frame)
    old, fp.box = fp.box, None
    try:
        prompts.set_box(obj, frame, box)
    except Exception:
        fp.box = old
        raise


def clear(prompts: Prompts, obj: Optional[str] = None, frame: Optional[int] = None) -> int:
    """Remove `obj`'s prompts (every object when None) on `frame` (every frame when None); returns how many
    frame entries went."""
    return prompts.remove(obj or None, frame)


def frame_prompt(prompts: Prompts, obj: str, frame: int):
    """(points [(x, y, positive)], box or None) given for `obj` on `frame` (empty when nothing)."""
    fp = prompts.objects.get(obj, {}).get(frame)
    if fp is None:
        return [], None
    return [(p.x, p.y, p.positive) for p in fp.points], fp.box


def prune(prompts: Prompts) -> Prompts:
    """Drop frame entries that hold nothing (Prompts.on creates them)."""
    return prompts.prune()
