"""QC report: vanish, jump and score-drop flags, and readable JSON/CSV."""

import csv
import json
import os

import numpy as np
import pytest

from mattebridge.core.errors import MatteBridgeError
from mattebridge.core.matte.confidence import QCReport, matte_stats

H, W = 90, 160


def _box(x, y, w=20, h=20):
    a = np.zeros((H, W), np.float32)
    a[y : y + h, x : x + w] = 1
    return a


def _track(backward=False):
    """Frames 1001-1012 of a box drifting right; 1006 vanishes, 1009 jumps, 1011 loses confidence."""
    qc = QCReport()
    order = list(enumerate(range(1001, 1013)))
    for i, f in reversed(order) if backward else order:
        x, score, alpha = 10 + 2 * i, 8.0, None
        if f == 1006:
            alpha = np.zeros((H, W), np.float32)
        elif f == 1009:
            alpha = _box(120, 60)
        elif f == 1011:
            score = 2.0
        qc.add(f, "hero", score, _box(x, 30) if alpha is None else alpha)
    return qc


def test_stats():
    area, (cx, cy) = matte_stats(_box(10, 30, 4, 2), origin=(100, 50))
    assert area == pytest.approx(8 / (H * W))
    assert (cx, cy) == (100 + 10 + 2, 50 + 30 + 1)  # pixel centres at +0.5
    assert matte_stats(np.zeros((4, 4))) == (0.0, None)


def test_flags():
    flags = {r.frame: r.flags for r in _track().records()}
    assert flags[1006] == ["vanished"]
    assert flags[1007] == []  # reappearing is not flagged (no previous present frame to compare)
    assert flags[1009] == ["jumped"]  # moved ~100 px on a 183 px diagonal
    assert flags[1010] == ["jumped"]  # and back
    assert flags[1011] == ["score_drop"]
    assert all(not flags[f] for f in (1001, 1002, 1003, 1004, 1005, 1008, 1012))


def test_score_below_zero_is_absent():
    qc = QCReport()
    qc.add(1, "a", 5.0, _box(10, 10))
    qc.add(2, "a", -1.0, _box(10, 10))
    r = qc.records()
    assert r[1].present is False and r[1].flags == ["vanished"]


def test_area_factor():
    qc = QCReport(area_factor=3.0)
    qc.add(1, "a", 5.0, _box(50, 30, 20, 20))
    qc.add(2, "a", 5.0, _box(50, 30, 20, 10))  # half the area, same-ish place: fine
    qc.add(3, "a", 5.0, _box(50, 30, 20, 2))  # a fifth of that: flagged
    assert [r.flags for r in qc.records()] == [[], [], ["jumped"]]


def test_order_of_adding_does_not_matter():
    a, b = _track(), _track(backward=True)  # a backward pass adds frames last to first
    assert [(r.frame, r.flags) for r in a.records()] == [(r.frame, r.flags) for r in b.records()]


def test_objects_are_separate():
    qc = _track()
    for f in range(1001, 1013):
        qc.add(f, "prop", 3.0, _box(100, 10))
    assert not any(r.flags for r in qc.records() if r.object == "prop")
    assert {r.frame for r in qc.flagged()} == {1006, 1009, 1010, 1011}


def test_write_json_and_csv(tmp_path):
    qc = _track()
    jp, cp = tmp_path / "qc" / "hero.json", tmp_path / "qc" / "hero.csv"
    qc.write_json(str(jp))
    qc.write_csv(str(cp))
    doc = json.loads(jp.read_text())
    assert doc["rules"]["jump"] == 0.1 and len(doc["records"]) == 12
    rec = {r["frame"]: r for r in doc["records"]}
    assert rec[1006]["flags"] == ["vanished"] and rec[1006]["centroid"] is None and rec[1006]["present"] is False
    assert rec[1001]["centroid"] == [20.0, 40.0]
    with open(cp, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 and rows[0]["frame"] == "1001" and rows[0]["object"] == "hero"
    assert {r["frame"]: r["flags"] for r in rows}["1009"] == "jumped"
    assert {r["frame"]: r["centroid_x"] for r in rows}["1006"] == ""
    assert sorted(os.listdir(tmp_path / "qc")) == ["hero.csv", "hero.json"]  # no temp files left


def test_write_error_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(MatteBridgeError, match="cannot write"):
        _track().write_json(str(blocker / "qc.json"))
