"""The show report: every task's QC report (core/matte/confidence.py, written by `track --report`) gathered
into one table per shot and object, worst first, so a supervisor sees which shots need an artist.

A frame is *lost* when the object is not present on it (no matte above 0.5, or SAM 2.1's object score below
0), and *low* when the model's predicted IoU of its mask is below the threshold (mask-prompted frames have no
predicted IoU: the artist drew them). Worst frames first: lost frames, then by predicted IoU, lowest first.
"""

from __future__ import annotations

import csv
import io
import json
import os
from typing import Dict, List

from mattebridge.core.errors import MatteBridgeError
from mattebridge.core.matte.confidence import _write_atomic
from mattebridge.core.wire.protocol import load_json

WORST_LISTED = 10  # frames named per row of the CSV (the JSON lists them all)


def _frame_rank(rec: dict):
    iou = rec.get("iou")
    return (bool(rec.get("present")), 2.0 if iou is None else float(iou), rec["frame"])


def summarise(shot: str, records: List[dict], threshold: float) -> List[dict]:
    """One row per object of a shot's QC records."""
    rows = []
    for obj in sorted({r["object"] for r in records}):
        recs = [r for r in records if r["object"] == obj]
        ious = [float(r["iou"]) for r in recs if r.get("iou") is not None]
        lost = sorted(r["frame"] for r in recs if not r.get("present"))
        low = sorted(r["frame"] for r in recs if r.get("iou") is not None and float(r["iou"]) < threshold)
        worst = [r for r in sorted(recs, key=_frame_rank) if not r.get("present") or r["frame"] in low]
        rows.append(
            {
                "shot": shot,
                "object": obj,
                "frames": len(recs),
                "lost_frames": lost,
                "low_confidence_frames": low,
                "flagged_frames": sorted(r["frame"] for r in recs if r.get("flags")),
                "min_iou": min(ious) if ious else None,
                "mean_iou": sum(ious) / len(ious) if ious else None,
                "worst_frames": [
                    {"frame": r["frame"], "present": bool(r.get("present")), "iou": r.get("iou"), "flags": r["flags"]}
                    for r in worst
                ],
            }
        )
    return rows


def _row_rank(row: dict):
    return (
        -len(row["lost_frames"]),
        -len(row["low_confidence_frames"]),
        2.0 if row["min_iou"] is None else row["min_iou"],
    )


def gather(report_dir: str, entries: List[Dict[str, str]], threshold: float) -> List[dict]:
    """Read each task's report (`entries`: shot and report stem) and write show_report.json and .csv into
    `report_dir`. A missing or unreadable report is an error naming the shot: the show report is complete or
    absent."""
    rows: List[dict] = []
    for entry in entries:
        path = os.path.join(report_dir, entry["report"] + ".json")
        try:
            with open(path, "rb") as f:
                doc = load_json(f.read())
            records = doc["records"]
            if not isinstance(records, list) or not all(isinstance(r, dict) and "frame" in r for r in records):
                raise ValueError("no records list")
        except OSError as e:
            raise MatteBridgeError(f"{path}: QC report of shot {entry['shot']} missing ({e.strerror or e})") from None
        except (ValueError, KeyError, TypeError) as e:
            raise MatteBridgeError(f"{path}: QC report of shot {entry['shot']} unreadable ({e})") from None
        rows += summarise(entry["shot"], records, threshold)
    rows.sort(key=_row_rank)
    doc = {"threshold": threshold, "shots": len({e["shot"] for e in entries}), "rows": rows}
    _write_atomic(os.path.join(report_dir, "show_report.json"), json.dumps(doc, indent=1) + "\n")
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(["shot", "object", "frames", "lost", "low_confidence", "min_iou", "mean_iou", "worst_frames"])
    for r in rows:
        out.writerow(
            [
                r["shot"],
                r["object"],
                r["frames"],
                len(r["lost_frames"]),
                len(r["low_confidence_frames"]),
                "" if r["min_iou"] is None else f"{r['min_iou']:.4f}",
                "" if r["mean_iou"] is None else f"{r['mean_iou']:.4f}",
                " ".join(str(w["frame"]) for w in r["worst_frames"][:WORST_LISTED]),
            ]
        )
    _write_atomic(os.path.join(report_dir, "show_report.csv"), buf.getvalue())
    return rows
