"""Prompts: clicks, boxes and masks per object and frame, and their JSON file (docs/prompts.md).

Coordinates are continuous pixels in the plate's display window, origin top-left, y down (docs/architecture.md §3).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from mattebridge.core.errors import MatteBridgeError
from mattebridge.core.wire.vocabulary import DEFAULT_OBJECT  # noqa: F401 (part of the prompts API)

SCHEMA_VERSION = 1
# The one grammar for object names (CLI, prompts JSON, wire, plugins): names become file names and EXR
# layer names, so nothing that can spell a path ('/', '..', a leading '.') or a huge name gets through.
OBJECT_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}")


def check_object_name(name) -> str:
    """`name` if it is a valid object name; else a one-line error naming it. Call before any other use."""
    if not isinstance(name, str) or not OBJECT_NAME.fullmatch(name):
        shown = repr(name) if not isinstance(name, str) or len(name) <= 80 else repr(name[:77] + "...")
        raise MatteBridgeError(f"object name {shown}: use 1-64 letters, digits, '_', '-' or '.', not starting with '.'")
    return name


@dataclass
class Point:
    x: float
    y: float
    positive: bool = True


@dataclass
class FramePrompt:
    points: List[Point] = field(default_factory=list)
    box: Optional[Tuple[float, float, float, float]] = None
    mask: Optional[str] = None  # path of an image whose alpha (or only channel) is the mask

    def to_json(self) -> dict:
        out: dict = {}
        if self.points:
            out["points"] = [{"x": p.x, "y": p.y, "positive": p.positive} for p in self.points]
        if self.box is not None:
            out["box"] = list(self.box)
        if self.mask is not None:
            out["mask"] = self.mask
        return out


# The farthest a box's corner may lie from the origin, in pixels (display windows reach at most 2**20, protocol's
# check_window): past it a box means nothing, and the model's coordinates overflow float32 (its scores turn NaN).
MAX_BOX_COORDINATE = float(1 << 20)


def check_frame_prompt(fp: FramePrompt, width: float, height: float, where: str) -> None:
    """The one rule for what one object's prompt on one frame may hold, in a `width` x `height` display window
    (Prompts.check, the server's prompt): points inside the image, a box that overlaps it and stays within
    MAX_BOX_COORDINATE, a mask alone. Raises a one-line MatteBridgeError starting with `where`."""
    if fp.mask is not None and (fp.points or fp.box is not None):
        raise MatteBridgeError(f"{where}: a mask cannot be combined with points or a box on one frame")
    for p in fp.points:
        if not (0 <= p.x <= width and 0 <= p.y <= height):
            raise MatteBridgeError(f"{where}: point {p.x:g},{p.y:g} is outside the image (0..{width:g}, 0..{height:g})")
    if fp.box is not None:
        x0, y0, x1, y1 = fp.box
        if x1 < 0 or y1 < 0 or x0 > width or y0 > height:
            raise MatteBridgeError(
                f"{where}: box {x0:g},{y0:g},{x1:g},{y1:g} is outside the image (0..{width:g}, 0..{height:g})"
            )
        if not all(abs(v) <= MAX_BOX_COORDINATE for v in fp.box):  # NaN fails this too
            raise MatteBridgeError(
                f"{where}: box {x0:g},{y0:g},{x1:g},{y1:g} reaches beyond {MAX_BOX_COORDINATE:.0f} pixels "
                f"(the image is 0..{width:g}, 0..{height:g})"
            )


@dataclass
class Prompts:
    """object name -> frame number -> what was given on that frame."""

    objects: Dict[str, Dict[int, FramePrompt]] = field(default_factory=dict)

    def on(self, obj: str, frame: int) -> FramePrompt:
        check_object_name(obj)
        return self.objects.setdefault(obj, {}).setdefault(frame, FramePrompt())

    def add_point(self, obj: str, frame: int, x: float, y: float, positive: bool = True) -> None:
        fp = self.on(obj, frame)
        x, y = float(x), float(y)
        if not (math.isfinite(x) and math.isfinite(y)):
            raise MatteBridgeError(f"object {obj!r}, frame {frame}: point {x:g},{y:g} is not finite")
        fp.points.append(Point(x, y, positive))

    def set_box(self, obj: str, frame: int, box) -> None:
        fp = self.on(obj, frame)
        if fp.box is not None:
            raise MatteBridgeError(f"object {obj!r}, frame {frame}: only one box per object and frame")
        x0, y0, x1, y1 = (float(v) for v in box)
        if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
            raise MatteBridgeError(f"object {obj!r}, frame {frame}: box {x0:g},{y0:g},{x1:g},{y1:g} is not finite")
        if x1 <= x0 or y1 <= y0:
            raise MatteBridgeError(
                f"object {obj!r}, frame {frame}: box {list(box)} must be X0,Y0,X1,Y1 with X1>X0, Y1>Y0"
            )
        fp.box = (x0, y0, x1, y1)

    def set_mask(self, obj: str, frame: int, path: str) -> None:
        fp = self.on(obj, frame)
        if fp.mask is not None:
            raise MatteBridgeError(f"object {obj!r}, frame {frame}: only one mask per object and frame")
        fp.mask = path

    def remove(self, object: Optional[str] = None, frame: Optional[int] = None) -> int:
        """Remove `object`'s prompts (every object's when None) on `frame` (every frame when None); an object
        left without frames goes too. Returns how many frame entries went."""
        removed = 0
        for name in [object] if object is not None else list(self.objects):
            per = self.objects.get(name)
            if per is None:
                continue
            for f in [frame] if frame is not None else list(per):
                removed += per.pop(f, None) is not None
            if not per:
                del self.objects[name]
        return removed

    def prune(self) -> "Prompts":
        """Drop frame entries that hold nothing (`on` creates them), and objects left without frames."""
        for name, per in list(self.objects.items()):
            for f in [f for f, fp in per.items() if not fp.points and fp.box is None and fp.mask is None]:
                self.remove(name, f)
        return self

    def frames(self) -> List[int]:
        return sorted({f for per in self.objects.values() for f in per})

    def is_empty(self) -> bool:
        return not any(self.objects.values())

    def check(self, frames, display_size) -> None:
        """Every prompt on a frame in `frames`, inside its display window (`display_size(frame)` -> w, h)."""
        if self.is_empty():
            raise MatteBridgeError("no prompts: give --point, --box, --mask or --prompts")
        for obj, per in self.objects.items():
            for frame, fp in per.items():
                where = f"object {obj!r}, frame {frame}"
                if frame not in frames:
                    raise MatteBridgeError(f"{where}: frame is outside the range {frames}")
                check_frame_prompt(fp, *display_size(frame), where)

    # --- the JSON file shared with the plugins -------------------------------------------------
    def to_json(self) -> dict:
        return {
            "version": SCHEMA_VERSION,
            "objects": [
                {"name": name, "frames": [dict(frame=f, **per[f].to_json()) for f in sorted(per)]}
                for name, per in self.objects.items()
            ],
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1, sort_keys=False)

    @classmethod
    def from_json(cls, doc, source: str = "prompts") -> "Prompts":
        def bad(msg):
            return MatteBridgeError(f"{source}: {msg}")

        if not isinstance(doc, dict) or not isinstance(doc.get("objects"), list):
            raise bad('expected {"version": 1, "objects": [...]}')
        version = doc.get("version", SCHEMA_VERSION)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise bad(f"version {version!r} is newer than this mattebridge understands ({SCHEMA_VERSION})")
        prompts = cls()
        for i, obj in enumerate(doc["objects"]):
            if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
                raise bad(f"objects[{i}]: needs a string 'name'")
            name = obj["name"]
            frames = obj.get("frames") or []
            if not isinstance(frames, list):
                raise bad(f"objects[{i}] ({name!r}): 'frames' must be a list")
            for j, fr in enumerate(frames):
                where = f"objects[{i}] ({name!r}) frames[{j}]"
                if not isinstance(fr, dict):
                    raise bad(f"{where}: expected an object with a 'frame'")
                try:
                    frame = fr["frame"]
                    if isinstance(frame, bool) or (isinstance(frame, float) and not frame.is_integer()):
                        raise ValueError(f"frame {frame!r} is not a whole number")
                    frame = int(frame)
                    for p in fr.get("points", []):
                        x, y = float(p["x"]), float(p["y"])  # also refuses a point that is not an object
                        positive = p.get("positive", True)
                        if not isinstance(positive, bool):  # "false" is a string, and bool("false") is True
                            raise ValueError(f"positive {positive!r}: expected true or false")
                        prompts.add_point(name, frame, x, y, positive)
                    if fr.get("box") is not None:
                        if len(fr["box"]) != 4:
                            raise ValueError("box needs 4 numbers")
                        prompts.set_box(name, frame, fr["box"])
                    if fr.get("mask") is not None:
                        prompts.set_mask(name, frame, str(fr["mask"]))
                    prompts.on(name, frame)
                except MatteBridgeError as e:
                    raise bad(f"{where}: {e}") from None
                except KeyError as e:
                    raise bad(f"{where}: missing {e}") from None
                except (TypeError, ValueError, OverflowError) as e:
                    raise bad(f"{where}: {e}") from None
        return prompts

    @classmethod
    def load(cls, path: str) -> "Prompts":
        """A prompts file, parsed strictly (protocol.load_json): nested at most MAX_JSON_DEPTH deep (a prompts
        document nests 7), no NaN/Infinity or overflowing numbers; every failure is one line naming the file."""
        from mattebridge.core.wire.protocol import load_json

        limit = 64 << 20  # far beyond any prompts file; bounds what a wrong path (a device, a plate) makes us read
        try:
            with open(path, "rb") as f:
                data = f.read(limit + 1)
        except OSError as e:
            raise MatteBridgeError(f"{path}: cannot read prompts file ({e.strerror or e})") from None
        except ValueError as e:  # a path with a NUL byte or an unencodable character
            raise MatteBridgeError(f"{path!r}: cannot read prompts file ({e})") from None
        if len(data) > limit:
            raise MatteBridgeError(f"{path}: not a prompts file (larger than {limit >> 20} MiB)")
        try:
            doc = load_json(data)
        except ValueError as e:
            raise MatteBridgeError(f"{path}: not valid JSON ({e})") from None
        return cls.from_json(doc, source=path)

    def merge(self, other: "Prompts") -> None:
        for name, per in other.objects.items():
            for frame, fp in per.items():
                for p in fp.points:
                    self.add_point(name, frame, p.x, p.y, p.positive)
                if fp.box is not None:
                    self.set_box(name, frame, fp.box)
                if fp.mask is not None:
                    self.set_mask(name, frame, fp.mask)


# --- command-line prompt specs: X,Y[@F], X0,Y0,X1,Y1[@F], PATH[@F] ------------------------------
def split_frame(spec: str, default_frame: int, flag: str) -> Tuple[str, int]:
    body, sep, frame = spec.rpartition("@")
    if not sep:
        return spec, default_frame
    if not re.fullmatch(r"-?\d+", frame.strip()):
        raise MatteBridgeError(f"{flag} {spec!r}: frame after '@' must be a whole number")
    return body, int(frame)


def parse_numbers(text: str, count: int, flag: str, spec: str) -> List[float]:
    parts = text.split(",")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != count or any(v != v or v in (float("inf"), float("-inf")) for v in values):
        shape = "X,Y" if count == 2 else "X0,Y0,X1,Y1"
        raise MatteBridgeError(f"{flag} {spec!r}: expected {shape}[@FRAME] with numbers")
    return values
