"""Nuke space <-> the wire (docs/architecture.md §3), windows, and knob values -> the prompts JSON."""

import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent / "nuke"))
import nuke_harness  # noqa: E402,F401 - puts the plugin on sys.path

from mattebridge.core.wire.prompts import Prompts  # noqa: E402
from mattebridge_nuke import coords  # noqa: E402
from mattebridge_nuke.prompts import ObjectKnobs, PointKnob, PromptError, canonical, check_on_image, to_wire  # noqa: E402

coord = st.floats(-5000, 5000, allow_nan=False, allow_infinity=False)


def test_pixel_centres_map_corner_to_corner():
    # 1920x1080: Nuke's top-left pixel (column 0, row 1079) has its centre at 0.5, 1079.5
    assert coords.point_to_wire(0.5, 1079.5, 1080) == (0.5, 0.5)
    assert coords.point_to_wire(1919.5, 0.5, 1080) == (1919.5, 1079.5)
    assert coords.point_to_wire(0, 0, 1080) == (0.0, 1080.0)  # bottom-left corner of the image


@given(coord, coord, st.integers(1, 8000))
def test_points_round_trip(x, y, h):
    wx, wy = coords.point_to_wire(x, y, h)
    assert coords.point_from_wire(wx, wy, h) == pytest.approx((x, y))
    assert wx == x and wy == pytest.approx(h - y)


def test_box_flips_and_orders_corners():
    # a box over the top-left quarter of a 100x80 image
    assert coords.box_to_wire((0, 40, 50, 80), 80) == (0, 0, 50, 40)
    # corners dragged past each other in the Viewer
    assert coords.box_to_wire((50, 80, 0, 40), 80) == (0, 0, 50, 40)


@given(coord, coord, coord, coord, st.integers(1, 8000))
def test_box_round_trip(a, b, c, d, h):
    x0, y0, x1, y1 = coords.box_to_wire((a, b, c, d), h)
    assert x1 >= x0 and y1 >= y0
    assert coords.box_from_wire((x0, y0, x1, y1), h) == pytest.approx((min(a, c), min(b, d), max(a, c), max(b, d)))


def test_data_window_and_bbox():
    display = (0, 0, 100, 70)
    # 80x60 pixels starting 5 right of and 3 below the display's top-left corner
    assert coords.data_window_to_bbox((5, 3, 80, 60), display) == (5, 7, 85, 67)
    assert coords.bbox_to_data_window((5, 7, 85, 67), display) == (5, 3, 80, 60)
    # overscan: the data window reaches outside the format on every side
    assert coords.data_window_to_bbox((-10, -20, 120, 110), display) == (-10, -20, 110, 90)
    # a display window that does not start at 0,0 (Nuke's format starts at its corner)
    assert coords.data_window_to_bbox((15, 23, 80, 60), (10, 20, 100, 70)) == (5, 7, 85, 67)


@given(
    st.integers(-500, 500),
    st.integers(-500, 500),
    st.integers(1, 900),
    st.integers(1, 900),
    st.integers(-50, 50),
    st.integers(-50, 50),
    st.integers(1, 900),
    st.integers(1, 900),
)
def test_windows_round_trip(x, y, w, h, dx, dy, dw, dh):
    data, display = (x, y, w, h), (dx, dy, dw, dh)
    bbox = coords.data_window_to_bbox(data, display)
    assert bbox[2] - bbox[0] == w and bbox[3] - bbox[1] == h
    assert coords.bbox_to_data_window(bbox, display) == data


def test_bboxes_agree_within_nukes_black_border():
    assert coords.bboxes_agree((5, 7, 85, 67), (4, 6, 86, 68))
    assert not coords.bboxes_agree((5, 7, 85, 67), (2, 3, 42, 33))  # a half-size (proxy) bbox


def hero(**kw):
    points = [
        PointKnob("hero +1", True, {1001.0: (812.0, 540.0), 1040.0: (820.0, 530.0)}),
        PointKnob("hero -1", False, {1040.0: (300.0, 880.0)}),
    ]
    return ObjectKnobs("hero", points=points, box={1001.0: (700.0, 180.0, 1000.0, 780.0)}, **kw)


def test_knob_keys_become_the_prompts_json():
    doc = to_wire(canonical([hero(), ObjectKnobs("unused")]), 1080)
    assert doc == {
        "version": 1,
        "objects": [
            {
                "name": "hero",
                "frames": [
                    {
                        "frame": 1001,
                        "points": [{"x": 812.0, "y": 540.0, "positive": True}],
                        "box": [700.0, 300.0, 1000.0, 900.0],
                    },
                    {
                        "frame": 1040,
                        "points": [
                            {"x": 820.0, "y": 550.0, "positive": True},
                            {"x": 300.0, "y": 200.0, "positive": False},
                        ],
                    },
                ],
            }
        ],
    }
    # the schema of docs/prompts.md, as core reads it
    prompts = Prompts.from_json(doc)
    assert prompts.objects["hero"][1040].points[1].positive is False
    assert prompts.objects["hero"][1001].box == (700.0, 300.0, 1000.0, 900.0)


def test_disabled_and_empty_objects_send_nothing():
    assert canonical([hero(enabled=False), ObjectKnobs("prop", points=[PointKnob("p", True, {})])]) == {}


@pytest.mark.parametrize(
    "objects, message",
    [
        ([ObjectKnobs("hero ball")], "object name"),
        ([ObjectKnobs(".hidden")], "object name"),
        ([ObjectKnobs("hero"), ObjectKnobs("hero")], "used twice"),
        ([ObjectKnobs("hero", points=[PointKnob("hero +1", True, {1001.5: (1.0, 2.0)})])], "whole frames"),
        ([ObjectKnobs("hero", box={1001.0: (10.0, 10.0, 10.2, 50.0)})], "no area"),
    ],
)
def test_bad_knobs_are_named(objects, message):
    with pytest.raises(PromptError, match=message):
        canonical(objects)


def test_points_off_the_image_are_named_in_nuke_terms():
    prompts = canonical([ObjectKnobs("hero", points=[PointKnob("hero -1", False, {1001.0: (50.0, -3.0)})])])
    with pytest.raises(PromptError, match=r"hero, frame 1001: background point 50,-3 is off the image"):
        check_on_image(prompts, 100, 70)
    check_on_image(canonical([hero()]), 1920, 1080)
    off = canonical([ObjectKnobs("hero", box={1001.0: (200.0, 10.0, 300.0, 50.0)})])
    with pytest.raises(PromptError, match="box is off the image"):
        check_on_image(off, 100, 70)
