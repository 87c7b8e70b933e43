"""Cache keys: which inputs a matte depends on, so that a change invalidates exactly the mattes it affects.

A matte is kept per (object, frame) with the kind of pass that made it and a key. The key hashes
everything that matte depends on; when any of it changes, the key changes and the matte is put aside
(cache.py). The rule follows how the server tracks (core/track.py, core/engine.py, sam2's video
predictor), where each object is tracked on its own (one memory per object):

* base: the model (name, checkpoint SHA-256, input size), the edge mode and other matte settings, the
  input's format, and this key scheme's version. A change here invalidates every matte.
* stamps: an identity per input frame (file size and time of the plate, or of everything upstream of
  the node): a frame's stamp is part of the keys of every matte that saw that frame.
* forward (a ▶ pass, and the ▶ half of ◀▶): the pass starts at S, the earliest prompted frame of any
  object (tracks start together). Object O's matte on frame F >= S depends on S, on O's first prompt
  (wherever it is: it is given before tracking starts and SAM 2 attends to it from any frame), on O's
  other prompts on frames <= F (corrections take effect when the pass reaches them) and on the input
  frames S..F. Nothing after F and no other object's prompt matters. So a new key on 1040 invalidates
  1040 onwards of that object only; frames before 1040 keep their mattes.
* backward (a ◀ pass): the mirror image. S is the latest prompted frame of any object; O's matte on F <= S
  depends on S, O's last prompt, O's prompts on frames >= F and the input frames F..S.
* both-back (the ◀ half of ◀▶, frames before S): it runs after the whole forward pass, with every
  correction of the forward pass in the model's memory, so it depends on all of O's prompts, on S, on
  the range and on every input frame from F to the range's end.
* preview (one frame, Preview button): O's prompt on F and the input frame F.
Frames a pass does not reach (before S going forward, after S going backward) get no matte.
"""

import hashlib
import json
from typing import Dict, List, Optional, Tuple

KEY_VERSION = 1
KINDS = ("forward", "backward", "both-back", "preview")
DIRECTIONS = ("forward", "backward", "both")  # mattebridge.core.wire.vocabulary.DIRECTIONS (a test compares them)


def digest(*parts) -> str:
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def base_key(model: dict, settings: dict, image_format: Tuple[int, int, float]) -> str:
    """model: {"name", "checkpoint_sha256", "image_size"} as the server reports it; settings: the matte
    settings sent with every request (edge, ...); image_format: full-size (width, height, pixel aspect)."""
    return digest(
        "mattebridge-nuke",
        KEY_VERSION,
        {k: model.get(k) for k in ("name", "checkpoint_sha256", "image_size")},
        settings,
        list(image_format),
    )


class KeyContext:
    """Everything the keys depend on at one moment; `key(obj, frame, kind)` is None where no matte can be."""

    def __init__(
        self,
        model: dict,
        settings: dict,
        image_format,
        prompts: Dict[str, Dict[int, dict]],
        stamps: Dict[int, str],
        first: int,
        last: int,
    ):
        self.model, self.settings = dict(model), dict(settings)
        self.image_format = [int(image_format[0]), int(image_format[1]), float(image_format[2])]
        self.base = base_key(self.model, self.settings, self.image_format)
        self.first, self.last = int(first), int(last)
        self.prompts = {o: {int(f): fp for f, fp in per.items()} for o, per in prompts.items() if per}
        self.stamps = {int(f): s for f, s in stamps.items()}
        self._chains: Dict[Tuple[str, int], Dict[int, str]] = {}

    # --- where passes start and what they cover -------------------------------------------------
    def start(self, direction: str) -> Optional[int]:
        """The frame a pass starts from: the earliest prompted frame (forward, both) or the latest (backward)."""
        frames = [f for per in self.prompts.values() for f in per]
        if not frames:
            return None
        return max(frames) if direction == "backward" else min(frames)

    def span(self, direction: str) -> Optional[Tuple[int, int]]:
        """The frames a pass in `direction` reads (first, last), or None without prompts."""
        s = self.start(direction)
        if s is None:
            return None
        if direction == "forward":
            return s, self.last
        if direction == "backward":
            return self.first, s
        return self.first, self.last

    def outside(self) -> List[Tuple[str, int]]:
        """(object, frame) of prompts outside the range."""
        return [(o, f) for o, per in self.prompts.items() for f in per if not self.first <= f <= self.last]

    # --- keys --------------------------------------------------------------------------------------
    def _chain(self, origin: int, step: int) -> Dict[int, str]:
        """frame -> hash of the stamps from `origin` to that frame (walking by `step`), None-free."""
        cached = self._chains.get((str(step), origin))
        if cached is not None:
            return cached
        chain: Dict[int, str] = {}
        running = digest("stamps", origin, step)
        frame = origin
        while self.first <= frame <= self.last and frame in self.stamps:
            running = digest(running, self.stamps[frame])
            chain[frame] = running
            frame += step
        self._chains[(str(step), origin)] = chain
        return chain

    def key(self, obj: str, frame: int, kind: str) -> Optional[str]:
        per = self.prompts.get(obj)
        if not per or not self.first <= frame <= self.last or frame not in self.stamps:
            return None
        frames = sorted(per)
        if kind == "preview":
            if frame not in per:
                return None
            return digest(self.base, "preview", obj, frame, per[frame], self.stamps[frame])
        if kind == "forward":
            s = self.start("forward")
            stamps = self._chain(s, 1).get(frame)
            if frame < s or stamps is None:
                return None
            used = [(f, per[f]) for f in frames if f <= frame or f == frames[0]]
            return digest(self.base, "forward", obj, s, used, stamps)
        if kind == "backward":
            s = self.start("backward")
            stamps = self._chain(s, -1).get(frame)
            if frame > s or stamps is None:
                return None
            used = [(f, per[f]) for f in frames if f >= frame or f == frames[-1]]
            return digest(self.base, "backward", obj, s, used, stamps)
        if kind == "both-back":
            s = self.start("forward")
            stamps = self._chain(self.last, -1).get(frame)
            if frame >= s or stamps is None:
                return None
            return digest(self.base, "both-back", obj, s, self.first, self.last, [(f, per[f]) for f in frames], stamps)
        raise ValueError(f"unknown kind {kind!r}")

    def kind_for(self, direction: str, frame: int) -> Optional[str]:
        """The kind of matte a pass in `direction` leaves on `frame` (None: the pass does not reach it)."""
        s = self.start(direction)
        if s is None:
            return None
        if direction == "forward":
            return "forward" if frame >= s else None
        if direction == "backward":
            return "backward" if frame <= s else None
        if direction == "both":
            return "forward" if frame >= s else "both-back"
        raise ValueError(f"unknown direction {direction!r}")

    def targets(self, direction: str) -> Dict[str, Dict[int, Tuple[str, str]]]:
        """object -> frame -> (kind, key) of every matte a pass in `direction` makes now."""
        span = self.span(direction)
        out: Dict[str, Dict[int, Tuple[str, str]]] = {}
        if span is None:
            return out
        for obj in self.prompts:
            for frame in range(span[0], span[1] + 1):
                kind = self.kind_for(direction, frame)
                key = self.key(obj, frame, kind) if kind else None
                if key is not None:
                    out.setdefault(obj, {})[frame] = (kind, key)
        return out

    # --- persistence (the manifest keeps the context of the last action) ----------------------------
    def to_json(self) -> dict:
        return {
            "model": self.model,
            "settings": self.settings,
            "format": self.image_format,
            "first": self.first,
            "last": self.last,
            "stamps": {str(f): s for f, s in self.stamps.items()},
            "prompts": {o: {str(f): fp for f, fp in per.items()} for o, per in self.prompts.items()},
        }

    @classmethod
    def from_json(cls, doc: dict) -> "KeyContext":
        return cls(
            doc["model"],
            doc["settings"],
            doc["format"],
            {o: {int(f): fp for f, fp in per.items()} for o, per in doc["prompts"].items()},
            {int(f): s for f, s in doc["stamps"].items()},
            doc["first"],
            doc["last"],
        )

    def replace(self, **changes) -> "KeyContext":
        """A copy with some of model, settings, image_format, prompts, stamps, first, last changed."""
        fields = dict(
            model=self.model,
            settings=self.settings,
            image_format=self.image_format,
            prompts=self.prompts,
            stamps=self.stamps,
            first=self.first,
            last=self.last,
        )
        fields.update(changes)
        return KeyContext(**fields)
