"""Outputs are made as private temp files and renamed; once renamed they carry the mode a plain open would have
given them (0666 less the umask), so the show's other readers (a compositor, the farm, a colleague's server) can
read mattes, reports and models as the user's umask intends."""

from __future__ import annotations

import os
import stat
import sys

import numpy as np
import pytest

from mattebridge.core.image.matte_io import write_matte
from mattebridge.core.image.plate import Geometry
from mattebridge.core.matte.confidence import QCReport
from mattebridge.core.paths import plain_mode

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX modes")


@pytest.fixture(params=[0o022, 0o027, 0o077])
def umask(request):
    before = os.umask(request.param)
    yield request.param
    os.umask(before)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_plain_mode_reads_the_umask_and_leaves_it(umask):
    assert plain_mode() == 0o666 & ~umask and plain_mode(folder=True) == 0o777 & ~umask
    assert os.umask(umask) == umask  # unchanged by the reading


def test_mattes_reports_and_nuke_caches_get_the_umasks_mode(umask, tmp_path):
    alpha = np.zeros((4, 6), np.float32)
    write_matte(str(tmp_path / "m.exr"), {"A": alpha}, Geometry((0, 0, 6, 4), (0, 0, 6, 4)), {})
    report = QCReport()
    report.add(1001, "hero", 1.0, alpha)
    report.write_json(str(tmp_path / "qc.json"))
    report.write_csv(str(tmp_path / "qc.csv"))
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "plugins", "nuke"))
    from mattebridge_nuke.exr import write_exr

    write_exr(str(tmp_path / "n.exr"), {"A": alpha}, (0, 0, 6, 4), (0, 0, 6, 4))
    for name in ("m.exr", "qc.json", "qc.csv", "n.exr"):
        assert mode(tmp_path / name) == 0o666 & ~umask, name


def test_a_servers_outputs_are_its_owners_alone(mb_server, bedroom_plate, tmp_path):
    """Another local user may ask the server for a cut-out of a plate they cannot read: the file is not theirs to
    read (the server runs under umask 077 on top of its owner's), while `track` keeps the user's umask."""
    from mattebridge.core.wire.client import Client

    with Client(mb_server.address, timeout=120) as client:
        clip = client.open_clip(bedroom_plate, "1001-1001", colorspace="ACEScg")
        clip.prompt(1001, "hero", points=[(300, 300, True)], edge="raw")
        run = clip.propagate(
            out=str(tmp_path / "m.####.exr"), cutout=str(tmp_path / "c.####.exr"), report=str(tmp_path / "qc.json")
        )
        list(run)
        clip.close()
    for name in ("m.1001.exr", "c.1001.exr", "qc.json", "qc.csv"):
        assert mode(tmp_path / name) == 0o600, name
