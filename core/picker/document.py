"""The prompts being edited in the window: objects, points and boxes per frame, with undo/redo.

No Qt here. Every edit returns the (frame, object) keys it changed, so the window knows exactly which
prompts to send to the server (or clear there). Coordinates are docs/architecture.md §3 display-window pixels.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Dict, List, Optional, Set, Tuple

from mattebridge.core.errors import MatteBridgeError
from mattebridge.core.wire.prompts import DEFAULT_OBJECT, FramePrompt, Point, Prompts

Key = Tuple[int, str]  # (frame, object)
UNDO_DEPTH = 200


class PromptDocument:
    """Ordered objects -> frame -> FramePrompt. Frames with nothing on them are not kept."""

    def __init__(self, prompts: Optional[Prompts] = None, objects: Optional[List[str]] = None):
        self._prompts = prompts or Prompts()
        self._order: List[str] = []
        for name in objects or []:
            _check_name(name)
            if name not in self._order:
                self._order.append(name)
        for name in self._prompts.objects:
            if name not in self._order:
                self._order.append(name)
        self._undo: List[tuple] = []
        self._redo: List[tuple] = []
        self.dirty = False

    # --- reading --------------------------------------------------------------------------------
    @property
    def objects(self) -> List[str]:
        return list(self._order)

    def frames(self, obj: Optional[str] = None) -> List[int]:
        if obj is None:
            return self._prompts.frames()
        return sorted(self._prompts.objects.get(obj, {}))

    def get(self, frame: int, obj: str) -> Optional[FramePrompt]:
        return self._prompts.objects.get(obj, {}).get(frame)

    def on_frame(self, frame: int) -> Dict[str, FramePrompt]:
        return {obj: per[frame] for obj, per in self._prompts.objects.items() if frame in per}

    def keys(self) -> Set[Key]:
        return {(f, obj) for obj, per in self._prompts.objects.items() for f in per}

    def is_empty(self) -> bool:
        return self._prompts.is_empty()

    def prompts(self) -> Prompts:
        """A copy of the prompts (what a propagation is given)."""
        return copy.deepcopy(self._prompts)

    def to_json(self) -> dict:
        """docs/prompts.md, objects in the window's order (an object without prompts keeps its place)."""
        doc = self._clean().to_json()
        listed = {o["name"]: o for o in doc["objects"]}
        doc["objects"] = [listed.get(name, {"name": name, "frames": []}) for name in self._order]
        return doc

    # --- objects ----------------------------------------------------------------------------------
    def new_object_name(self) -> str:
        if DEFAULT_OBJECT not in self._order:
            return DEFAULT_OBJECT
        n = 2
        while f"object{n}" in self._order:
            n += 1
        return f"object{n}"

    def add_object(self, name: str) -> Set[Key]:
        _check_name(name)
        if name in self._order:
            raise MatteBridgeError(f"object {name!r} already exists")
        self._edit(lambda: self._order.append(name))
        return set()

    def remove_object(self, name: str) -> Set[Key]:
        changed = {(f, name) for f in self.frames(name)}

        def do():
            self._order.remove(name)
            self._prompts.remove(name)

        self._edit(do)
        return changed

    def rename_object(self, old: str, new: str) -> Set[Key]:
        _check_name(new)
        if new == old:
            return set()
        if new in self._order:
            raise MatteBridgeError(f"object {new!r} already exists")
        frames = self.frames(old)

        def do():
            self._order[self._order.index(old)] = new
            per = self._prompts.objects.pop(old, None)
            if per:
                self._prompts.objects[new] = per

        self._edit(do)
        return {(f, old) for f in frames} | {(f, new) for f in frames}

    # --- prompts on one frame -----------------------------------------------------------------
    def add_point(self, frame: int, obj: str, x: float, y: float, positive: bool = True) -> Set[Key]:
        self._need(obj)
        fp = self.get(frame, obj)
        if fp is not None and fp.mask is not None:
            raise MatteBridgeError(f"object {obj!r}, frame {frame}: this frame has a mask prompt; clear it first")
        self._edit(lambda: self._prompts.add_point(obj, frame, float(x), float(y), bool(positive)))
        return {(frame, obj)}

    def move_point(self, frame: int, obj: str, index: int, x: float, y: float) -> Set[Key]:
        point = self.get(frame, obj).points[index]
        if (point.x, point.y) == (float(x), float(y)):
            return set()

        def do():
            p = self.get(frame, obj).points[index]
            p.x, p.y = float(x), float(y)

        self._edit(do)
        return {(frame, obj)}

    def toggle_point(self, frame: int, obj: str, index: int) -> Set[Key]:
        def do():
            p = self.get(frame, obj).points[index]
            p.positive = not p.positive

        self.get(frame, obj).points[index]  # IndexError before anything is recorded
        self._edit(do)
        return {(frame, obj)}

    def delete_point(self, frame: int, obj: str, index: int) -> Set[Key]:
        self.get(frame, obj).points[index]

        def do():
            del self.get(frame, obj).points[index]
            self._drop_if_empty(frame, obj)

        self._edit(do)
        return {(frame, obj)}

    def set_box(self, frame: int, obj: str, box) -> Set[Key]:
        """Replace (or, with None, remove) the object's box on this frame."""
        self._need(obj)
        fp = self.get(frame, obj)
        if box is not None:
            x0, y0, x1, y1 = (float(v) for v in box)
            box = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
            if box[2] - box[0] <= 0 or box[3] - box[1] <= 0:
                raise MatteBridgeError(f"object {obj!r}, frame {frame}: a box needs a width and a height")
            if fp is not None and fp.mask is not None:
                raise MatteBridgeError(f"object {obj!r}, frame {frame}: this frame has a mask prompt; clear it first")
        if (fp.box if fp else None) == box:
            return set()

        def do():
            target = self._prompts.on(obj, frame)
            target.box = box
            self._drop_if_empty(frame, obj)

        self._edit(do)
        return {(frame, obj)}

    def clear(self, frame: int, obj: str) -> Set[Key]:
        if self.get(frame, obj) is None:
            return set()

        def do():
            self._prompts.remove(obj, frame)

        self._edit(do)
        return {(frame, obj)}

    # --- undo / redo ------------------------------------------------------------------------------
    def undo(self) -> Set[Key]:
        return self._swap(self._undo, self._redo)

    def redo(self) -> Set[Key]:
        return self._swap(self._redo, self._undo)

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def _state(self) -> tuple:
        return (copy.deepcopy(self._prompts), list(self._order))

    def _swap(self, source: list, target: list) -> Set[Key]:
        if not source:
            return set()
        before = self._snapshot_keys()
        target.append(self._state())
        self._prompts, self._order = source.pop()
        self.dirty = True
        after = self._snapshot_keys()
        return {k for k in set(before) | set(after) if before.get(k) != after.get(k)}

    def _snapshot_keys(self) -> Dict[Key, str]:
        return {
            (f, obj): json.dumps(fp.to_json(), sort_keys=True)
            for obj, per in self._prompts.objects.items()
            for f, fp in per.items()
        }

    def _edit(self, change) -> None:
        state = self._state()
        change()
        self._undo.append(state)
        del self._undo[:-UNDO_DEPTH]
        self._redo.clear()
        self.dirty = True

    def _need(self, obj: str) -> None:
        if obj not in self._order:
            raise MatteBridgeError(f"no object {obj!r}; objects: {', '.join(self._order) or 'none'}")

    def _drop_if_empty(self, frame: int, obj: str) -> None:
        fp = self._prompts.objects.get(obj, {}).get(frame)
        if fp is not None and not fp.points and fp.box is None and fp.mask is None:
            self._prompts.remove(obj, frame)

    def _clean(self) -> Prompts:
        """The prompts in object order (the JSON file lists objects as the window shows them)."""
        out = Prompts()
        for name in self._order:
            if name in self._prompts.objects:
                out.objects[name] = self._prompts.objects[name]
        return out

    # --- the JSON file shared with `mattebridge track --prompts` --------------------------------
    def save(self, path: str) -> None:
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        tmp = f"{path}.tmp{os.getpid()}"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(json.dumps(self.to_json(), indent=1) + "\n")
            os.replace(tmp, path)
        except OSError as e:
            raise MatteBridgeError(f"{path}: cannot save prompts ({e.strerror})") from None
        finally:
            if os.path.exists(tmp):  # a failed write (a full disk) leaves no temp file behind
                os.unlink(tmp)
        self.dirty = False

    @classmethod
    def load(cls, path: str) -> "PromptDocument":
        prompts = Prompts.load(path)  # first: the strict, bounded read reports any problem in one line
        return cls(prompts, _object_order(path))


def _object_order(path: str) -> List[str]:
    """Object names in file order, including objects saved without any prompt (the file has passed Prompts.load)."""
    from mattebridge.core.wire.protocol import load_json

    try:
        with open(path, "rb") as f:
            doc = load_json(f.read())
        return [o["name"] for o in doc.get("objects", []) if isinstance(o, dict) and isinstance(o.get("name"), str)]
    except (OSError, ValueError, AttributeError):
        return []  # changed since Prompts.load read it: the prompts' own order


def _check_name(name: str) -> None:
    Prompts().on(name, 0)  # raises the one-line error for a bad name


def wire_prompt(fp: FramePrompt) -> dict:
    """A FramePrompt as keyword arguments of `Clip.prompt` (docs/client.md)."""
    return {
        "points": [(p.x, p.y, p.positive) for p in fp.points],
        "box": tuple(fp.box) if fp.box is not None else None,
        "mask": fp.mask,
    }


__all__ = ["PromptDocument", "Point", "FramePrompt", "wire_prompt", "Key"]
