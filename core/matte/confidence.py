"""Per-frame, per-object QC: where did the track lose the object, jump, or lose confidence?

Records can arrive in any order (a backward pass after a forward one); the flags are computed over
each object's records sorted by frame, so the same track always gives the same report.

Flag rules (each compares a frame with the previous recorded frame of the same object):
- `vanished`: absent now (area < `min_area` or score < 0) but present on the previous frame.
- `jumped`: present on both, and the centroid moved more than `jump` x the frame diagonal,
  or the area grew or shrank by more than `area_factor`.
- `score_drop`: present now, and the score is more than `score_drop` below the median of the last
  `window` scores of frames where the object was present.
The score is SAM 2.1's object-presence logit: above 0 the model thinks the object is visible.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from mattebridge.core.errors import MatteBridgeError
from mattebridge.core.paths import plain_mode


@dataclass
class FrameQC:
    frame: int
    object: str
    score: Optional[float]  # None where no pass reached the frame (JSON null: a report is strict JSON)
    area: float  # fraction of the matte's pixels with alpha > 0.5
    centroid: Optional[Tuple[float, float]]  # display-window pixels (x, y); None when empty
    iou: Optional[float] = None  # the model's predicted IoU of the mask (None for mask prompts / untracked)
    present: bool = False
    flags: List[str] = field(default_factory=list)


def matte_stats(alpha: np.ndarray, origin: Tuple[int, int] = (0, 0)):
    """(area fraction, centroid) of alpha > 0.5; `origin` is the matte's (x, y) in the display window."""
    inside = np.asarray(alpha) > 0.5
    ys, xs = np.nonzero(inside)
    if xs.size == 0:
        return 0.0, None
    # pixel centres sit at +0.5 (docs/architecture.md §3)
    return xs.size / inside.size, (float(xs.mean()) + 0.5 + origin[0], float(ys.mean()) + 0.5 + origin[1])


class QCReport:
    def __init__(
        self,
        min_area: float = 1e-5,
        jump: float = 0.1,
        area_factor: float = 3.0,
        score_drop: float = 4.0,
        window: int = 9,
    ):
        self.rules = {
            "min_area": min_area,
            "jump": jump,
            "area_factor": area_factor,
            "score_drop": score_drop,
            "window": window,
        }
        self.diagonal = 0.0
        self._records: Dict[Tuple[str, int], FrameQC] = {}

    def add(
        self,
        frame: int,
        obj: str,
        score: Optional[float],
        alpha: np.ndarray,
        origin: Tuple[int, int] = (0, 0),
        iou: Optional[float] = None,
    ) -> None:
        """One object's matte on one frame. A frame recorded twice keeps the later record."""
        area, centroid = matte_stats(alpha, origin)
        h, w = np.shape(alpha)
        self.diagonal = max(self.diagonal, float(np.hypot(w, h)))
        self._records[obj, frame] = FrameQC(
            int(frame),
            str(obj),
            None if score is None else float(score),
            area,
            centroid,
            None if iou is None else float(iou),
        )

    def records(self) -> List[FrameQC]:
        """Every record, by object then frame, with `present` and `flags` filled in by the rules."""
        r = self.rules
        out: List[FrameQC] = []
        for obj in sorted({o for o, _ in self._records}):
            prev: Optional[FrameQC] = None
            scores: List[float] = []  # of present frames, newest last
            for frame in sorted(f for o, f in self._records if o == obj):
                rec = self._records[obj, frame]
                tracked = rec.score is not None
                rec.present = tracked and rec.centroid is not None and rec.area >= r["min_area"] and rec.score >= 0
                rec.flags = []
                if prev is not None and prev.present and not rec.present:
                    rec.flags.append("vanished")
                if prev is not None and prev.present and rec.present:
                    moved = np.hypot(rec.centroid[0] - prev.centroid[0], rec.centroid[1] - prev.centroid[1])
                    ratio = max(rec.area, prev.area) / min(rec.area, prev.area)
                    if moved > r["jump"] * self.diagonal or ratio > r["area_factor"]:
                        rec.flags.append("jumped")
                if rec.present:
                    if scores and rec.score < float(np.median(scores[-r["window"] :])) - r["score_drop"]:
                        rec.flags.append("score_drop")
                    scores.append(rec.score)
                out.append(rec)
                prev = rec
        return out

    def flagged(self) -> List[FrameQC]:
        return [r for r in self.records() if r.flags]

    def to_json(self) -> dict:
        return {"rules": self.rules, "diagonal": self.diagonal, "records": [asdict(r) for r in self.records()]}

    def write_json(self, path: str) -> None:
        _write_atomic(path, json.dumps(self.to_json(), indent=1) + "\n")

    def write_csv(self, path: str) -> None:
        buf = io.StringIO()
        out = csv.writer(buf, lineterminator="\n")
        out.writerow(["frame", "object", "score", "iou", "area", "centroid_x", "centroid_y", "present", "flags"])
        for r in self.records():
            cx, cy = r.centroid if r.centroid else ("", "")
            out.writerow(
                [
                    r.frame,
                    r.object,
                    "" if r.score is None else f"{r.score:.4f}",
                    "" if r.iou is None else f"{r.iou:.4f}",
                    f"{r.area:.6f}",
                    cx if cx == "" else f"{cx:.2f}",
                    cy if cy == "" else f"{cy:.2f}",
                    int(r.present),
                    ";".join(r.flags),
                ]
            )
        _write_atomic(path, buf.getvalue())


def _write_atomic(path: str, text: str) -> None:
    """Temp file in the same folder + rename, so a reader never sees half a report."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
        os.fchmod(fd, plain_mode())
    except OSError as e:
        raise MatteBridgeError(f"{path}: cannot write ({e.strerror})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        raise MatteBridgeError(f"{path}: cannot write ({e.strerror})") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
