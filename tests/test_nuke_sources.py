"""Where the server gets the node's input: the Read's files or a render; colour settings; frame identities."""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "nuke"))
from nuke_harness import small_plate  # noqa: E402

from mattebridge_nuke import sources  # noqa: E402


def test_frame_files_expand_like_nuke():
    assert sources.frame_file("/p/plate.%04d.exr", 1001) == "/p/plate.1001.exr"
    assert sources.frame_file("/p/plate.####.exr", 7) == "/p/plate.0007.exr"
    assert sources.frame_file("/p/plate.%d.exr", 7) == "/p/plate.7.exr"
    assert sources.frame_file("/p/plate.%04d.exr", -1) == "/p/plate.-001.exr"  # printf, as Nuke
    assert sources.to_hashes("/p/plate.%04d.exr") == "/p/plate.####.exr"


@pytest.mark.parametrize(
    "root, env, expected",
    [
        (
            {"colorManagement": "OCIO", "OCIO_config": "custom", "customOCIOConfigPath": "/show/config.ocio"},
            {},
            {"ocio": "/show/config.ocio", "nuke_spaces": False},
        ),
        (
            {"colorManagement": "OCIO", "OCIO_config": "fn-nuke_cg-config-v1.0.0_aces-v1.3_ocio-v2.1"},
            {},
            {"ocio": "ocio://cg-config-v1.0.0_aces-v1.3_ocio-v2.1", "nuke_spaces": False},
        ),
        ({"colorManagement": "Nuke", "OCIO_config": "nuke-default"}, {}, {"ocio": None, "nuke_spaces": True}),
        ({"colorManagement": "OCIO", "OCIO_config": "aces_1.2"}, {}, {"ocio": None, "nuke_spaces": False}),
        (
            {"colorManagement": "OCIO", "OCIO_config": "custom"},
            {"OCIO": "/env/config.ocio"},
            {"ocio": "/env/config.ocio", "nuke_spaces": False},
        ),
    ],
)
def test_the_scripts_colour_settings_for_the_server(root, env, expected):
    assert sources.ocio_setup(root, env) == expected


def test_colour_space_names():
    assert sources.server_colorspace("default (ACEScg)", False) == "ACEScg"
    assert sources.server_colorspace("linear", True) == "Linear Rec.709 (sRGB)"
    assert sources.server_colorspace("", False) is None
    assert sources.server_colorspace("default", False) is None  # Nuke's bare default names no space
    assert sources.server_colorspace(" default ", True) is None
    assert sources.server_colorspace("default (sRGB)", True) == "sRGB - Texture"


def read(pattern, **kw):
    info = {"file": pattern, "first": 1001, "last": 1006, "frame": "", "disable": False}
    info.update(kw)
    return info


def test_when_the_reads_files_can_be_used(tmp_path):
    pattern = small_plate(tmp_path)
    assert sources.direct_read_problem(read(pattern), 1001, 1006) is None
    assert sources.direct_read_problem(None, 1001, 1006) == "the input is not a Read"
    assert "disabled" in sources.direct_read_problem(read(pattern, disable=True), 1001, 1006)
    assert "changes frame numbers" in sources.direct_read_problem(read(pattern, frame="frame+10"), 1001, 1006)
    assert "does not cover" in sources.direct_read_problem(read(pattern), 1001, 1010)
    assert ".mov" in sources.direct_read_problem(read(str(tmp_path / "plate.mov")), 1001, 1006)
    os.unlink(pattern % 1006)
    assert sources.direct_read_problem(read(pattern), 1001, 1006).endswith("plate.1006.exr is missing")


def test_frame_identities_change_with_the_file(tmp_path):
    pattern = small_plate(tmp_path)
    before = sources.direct_stamps(pattern, range(1001, 1007), "ACEScg")
    small_plate(tmp_path, first=1004, last=1004, seed=9)  # frame 1004 rendered again
    os.utime(pattern % 1004, ns=(1, 1))
    after = sources.direct_stamps(pattern, range(1001, 1007), "ACEScg")
    assert [f for f in before if before[f] != after[f]] == [1004]
    assert sources.direct_stamps(pattern, [1001], "ACEScg") != sources.direct_stamps(pattern, [1001], "sRGB")
    rendered = sources.rendered_stamps("recipe", [pattern], range(1001, 1007))
    assert rendered != sources.rendered_stamps("other recipe", [pattern], range(1001, 1007))
