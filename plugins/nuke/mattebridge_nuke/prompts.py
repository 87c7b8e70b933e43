"""Knob values -> prompts (docs/prompts.md). Pure Python: the Nuke side reads the knobs into these records.

How the node's knobs mean prompts: an object's XY knobs are its points (foreground or background by the
knob), its BBox knob its box. A knob is a prompt on frame F when it has a key on F; its value there is the
prompt. Dragging a handle sets a key on the current frame (the node's knobChanged does it), so "a
correction on frame 1040" is simply a key on 1040. Knobs without any key say nothing.
"""

import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from . import coords

# The project's one grammar for object names: a copy of mattebridge.core.wire.prompts.OBJECT_NAME (the plugin
# cannot import core in every Nuke); tests/test_nuke_prompts_names.py checks the two are identical.
OBJECT_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}")
Box = Tuple[float, float, float, float]


class PromptError(Exception):
    """A prompt the server would refuse, named the way the user sees it in Nuke."""


def name_problem(name: str) -> Optional[str]:
    """None for a valid object name, else a one-line reason naming it."""
    if OBJECT_NAME.fullmatch(name):
        return None
    shown = repr(name) if len(name) <= 80 else repr(name[:77] + "...")
    return (
        f"object name {shown}: use 1-64 letters, digits, '_', '-' or '.', not starting with '.' "
        f"(it names the matte files and the layer)"
    )


@dataclass
class PointKnob:
    label: str  # how the user knows the knob ("hero +1")
    positive: bool
    keys: Dict[float, Tuple[float, float]] = field(default_factory=dict)  # key time -> (x, y), Nuke space


@dataclass
class ObjectKnobs:
    name: str
    enabled: bool = True
    points: List[PointKnob] = field(default_factory=list)
    box: Dict[float, Box] = field(default_factory=dict)  # key time -> (x, y, r, t), Nuke space


def _whole_frame(time: float, where: str) -> int:
    frame = int(round(time))
    if abs(time - frame) > 1e-6:
        raise PromptError(f"{where}: key at frame {time:g}; prompts must sit on whole frames")
    return frame


def canonical(objects: Sequence[ObjectKnobs]) -> Dict[str, Dict[int, dict]]:
    """object -> frame -> {"points": [[x, y, positive], ...], "box": [x, y, r, t] or None}, in Nuke space.

    Only enabled objects with at least one key. This is what the cache keys hash (keys.py) and what
    `to_wire` sends; the order of points is the order of the knobs.
    """
    out: Dict[str, Dict[int, dict]] = {}
    seen = set()
    for obj in objects:
        name = obj.name.strip()
        problem = name_problem(name)
        if problem:
            raise PromptError(problem)
        if name in seen:
            raise PromptError(f"object name {name!r} is used twice")
        seen.add(name)
        if not obj.enabled:
            continue
        per: Dict[int, dict] = {}
        for point in obj.points:
            for time, (x, y) in sorted(point.keys.items()):
                frame = _whole_frame(time, f"{name}: point {point.label}")
                per.setdefault(frame, {"points": [], "box": None})["points"].append(
                    [float(x), float(y), point.positive]
                )
        for time, box in sorted(obj.box.items()):
            frame = _whole_frame(time, f"{name}: box")
            x, y, r, t = (float(v) for v in box)
            if abs(r - x) < 1 or abs(t - y) < 1:
                raise PromptError(
                    f"{name}, frame {frame}: the box {x:g},{y:g} - {r:g},{t:g} has no area; drag its corners apart"
                )
            per.setdefault(frame, {"points": [], "box": None})["box"] = [x, y, r, t]
        if per:
            out[name] = {f: per[f] for f in sorted(per)}
    return out


def check_on_image(prompts: Dict[str, Dict[int, dict]], width: float, height: float) -> None:
    """Every point on the image and every box touching it (Nuke space, full-size format)."""
    for name, per in prompts.items():
        for frame, fp in per.items():
            for x, y, positive in fp["points"]:
                if not coords.inside(x, y, width, height):
                    kind = "foreground" if positive else "background"
                    raise PromptError(
                        f"{name}, frame {frame}: {kind} point {x:g},{y:g} is off the image "
                        f"(0..{width:g}, 0..{height:g})"
                    )
            if fp["box"] is not None:
                x, y, r, t = fp["box"]
                if max(x, r) < 0 or max(y, t) < 0 or min(x, r) > width or min(y, t) > height:
                    raise PromptError(f"{name}, frame {frame}: the box is off the image")


def frames_of(prompts: Dict[str, Dict[int, dict]], name: Optional[str] = None) -> List[int]:
    return sorted({f for n, per in prompts.items() if name in (None, n) for f in per})


def frame_to_wire(fp: dict, display_height: float) -> dict:
    """One object's prompt on one frame -> the prompts-file entry (without "frame")."""
    out: dict = {}
    if fp["points"]:
        out["points"] = []
        for x, y, positive in fp["points"]:
            wx, wy = coords.point_to_wire(x, y, display_height)
            out["points"].append({"x": wx, "y": wy, "positive": bool(positive)})
    if fp["box"] is not None:
        out["box"] = list(coords.box_to_wire(fp["box"], display_height))
    return out


def to_wire(prompts: Dict[str, Dict[int, dict]], display_height: float) -> dict:
    """The prompts JSON of docs/prompts.md, in the wire's coordinates (docs/architecture.md §3)."""
    return {
        "version": 1,
        "objects": [
            {"name": name, "frames": [dict(frame=f, **frame_to_wire(fp, display_height)) for f, fp in per.items()]}
            for name, per in prompts.items()
        ],
    }
