"""The throughput benchmark and the GPU script run end to end at a tiny size on the CPU, so they cannot rot.
No timing is asserted: only that every measure is taken and printed as a number."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from conftest import REPO

GPU_SH = str(REPO / "bench" / "gpu.sh")
CELL = re.compile(r"^\**\d+(\.\d+)?\**( / \d+(\.\d+)?)?$")  # "12.3", "12.3 / 11.9", "**0.95** / 0.91"
PIPELINE_ROWS = [
    "floor: read_plate + write_matte",
    "feed alone",
    "writer alone, soft edge: CPU ms/frame",
    "writer alone, raw edge: CPU ms/frame",
    "whole pipeline, stand-in engine, soft edge: CPU ms/frame",
    "**CPU outside the model / floor, soft edge**",
    "**CPU outside the model / floor, raw edge**",
    "end-to-end (TrackRun, soft edge, the model)",
    "bare model (its tracker",
    "**end-to-end / bare model frames/s**",
    "bare SAM2VideoPredictor",
    "**end-to-end / bare SAM2VideoPredictor frames/s**",
]
MODEL_ROWS = PIPELINE_ROWS[7:]  # what --parts model,sam2 measures


def table(stdout: str):
    """{row: {column: cell}} of the last markdown table printed."""
    lines = [ln for ln in stdout.splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header[1:], cells[1:]))
    return rows


def cell(rows, start: str, column: str) -> str:
    found = [cells[column] for row, cells in rows.items() if row.startswith(start)]
    assert found, f"no row {start!r} in {list(rows)}"
    return found[0]


def test_gpu_script_runs_every_step_on_the_cpu(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, WORK=str(tmp_path))
    done = subprocess.run(["bash", GPU_SH, "--cpu-smoke"], capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = table(done.stdout)
    tiny, base = "tiny @64, 96x64", "base+ @64, 96x64"
    for start in PIPELINE_ROWS:
        assert CELL.match(cell(rows, start, tiny)), (start, rows)
    for start in MODEL_ROWS:
        assert CELL.match(cell(rows, start, base)), (start, rows)
    assert cell(rows, "whole pipeline, stand-in engine, soft edge", base) == "–"  # model-independent: tiny only
    for start in ("click -> matte, features cached, server idle", "click -> matte, features cached, during"):
        assert CELL.match(cell(rows, start, tiny)), (start, rows)
    for frames in (3, 6):
        assert CELL.match(cell(rows, f"whole run, {frames} frames (soft edge): peak RSS MiB", tiny))


def test_gpu_script_without_cuda_fails_at_once_in_one_line():
    env = dict(os.environ, PYTHON=sys.executable, CUDA_VISIBLE_DEVICES="")
    done = subprocess.run(["bash", GPU_SH], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("gpu.sh: no CUDA device") and done.stderr.count("\n") == 1
