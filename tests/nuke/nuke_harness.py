"""Shared helpers of the Nuke plugin tests: the plugin and the nuke STAND-IN on sys.path, small plates."""

import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
PLUGIN = REPO / "plugins" / "nuke"
HERE = Path(__file__).resolve().parent

for path in (str(PLUGIN), str(HERE)):
    if path not in sys.path:
        sys.path.insert(0, path)


def install_standin():
    """`import nuke` gives the stand-in (tests/nuke/standin_nuke.py), reset to an empty script."""
    import standin_nuke

    sys.modules["nuke"] = standin_nuke
    standin_nuke.standin_reset(plugin_path=[str(PLUGIN)])
    return standin_nuke


def small_plate(folder, first=1001, last=1006, display=(0, 0, 100, 70), data=(5, 3, 80, 60), aspect=1.0, seed=0):
    """A float EXR sequence with a bright square moving right, over a data window smaller than the display."""
    from conftest import write_exr

    rng = np.random.default_rng(seed)
    os.makedirs(str(folder), exist_ok=True)
    pattern = os.path.join(str(folder), "plate.%04d.exr")
    w, h = data[2], data[3]
    for f in range(first, last + 1):
        rgb = (rng.random((h, w, 3)) * 0.1).astype(np.float32)
        x0 = 10 + 2 * (f - first)
        rgb[15:40, x0 : x0 + 25] += 0.9
        write_exr(
            pattern % f, {c: rgb[..., i] for i, c in enumerate("RGB")}, display=display, data=data, pixel_aspect=aspect
        )
    return pattern


def wait_job(job, nuke=None, timeout=120.0):
    """Until the job's thread ends; with the stand-in, its main-thread queue is pumped meanwhile."""
    deadline = time.monotonic() + timeout
    if nuke is None:
        job.thread.join(timeout)
    else:
        nuke.standin_process_events(until=lambda: not job.thread.is_alive(), timeout=timeout)
        nuke.standin_process_events()
    assert not job.thread.is_alive() and time.monotonic() < deadline, "job did not finish"
    return job.outcome
