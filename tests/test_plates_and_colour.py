"""Plate reading (OpenImageIO) and what the model sees (OpenColorIO), with real files and configs."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FOOTAGE, write_exr

from mattebridge.core.engine.feed import MEAN, STD, ModelFeed, model_view
from mattebridge.core.errors import MatteBridgeError
from mattebridge.core.image.colour import DisplayTransform, load_config, resolve_colorspace, resolve_view
from mattebridge.core.image.plate import read_header, read_plate
from mattebridge.core.wire.sequence import FrameRange, frame_path

STUDIO = "ocio://studio-config-latest"


def rgb(h=48, w=64, seed=0):
    return np.random.default_rng(seed).random((h, w, 3)).astype(np.float32) * 4  # scene-linear, > 1 too


@pytest.mark.parametrize("pixel_type,tiled", [("half", False), ("float", False), ("half", True), ("float", True)])
def test_exr_scanline_and_tiled_half_and_float(tmp_path, pixel_type, tiled):
    pixels = rgb()
    path = write_exr(
        tmp_path / "p.exr", {c: pixels[..., i] for i, c in enumerate("RGB")}, pixel_type=pixel_type, tiled=tiled
    )
    plate = read_plate(path)
    tol = 2e-3 * 4 if pixel_type == "half" else 0
    np.testing.assert_allclose(plate.pixels, pixels, atol=tol)
    assert plate.is_float and plate.pixels.dtype == np.float32
    assert np.array_equal(plate.pixels, oiio_float(path))  # half channels are widened exactly as OpenImageIO does


def oiio_float(path: str) -> np.ndarray:
    import OpenImageIO as oiio

    inp = oiio.ImageInput.open(path)
    try:
        return inp.read_image(0, 0, 0, inp.spec().nchannels, "float")
    finally:
        inp.close()


@pytest.mark.parametrize("formats", ["half half half float", "float half half half", "half float half half"])
def test_mixed_channel_formats_read_as_openimageio_reads_them(tmp_path, formats):
    import OpenImageIO as oiio

    pixels = np.random.default_rng(3).normal(0, 100, (48, 64, 4)).astype(np.float32)
    spec = oiio.ImageSpec(64, 48, 4, "float")
    spec.channelnames = ("R", "G", "B", "Z")
    spec.channelformats = tuple(oiio.TypeDesc(f) for f in formats.split())
    path = str(tmp_path / "mixed.exr")
    out = oiio.ImageOutput.create(path)
    assert out.open(path, spec), oiio.geterror()
    assert out.write_image(pixels)
    out.close()
    assert np.array_equal(read_plate(path).pixels, oiio_float(path)[..., :3])


def test_half_widening_is_numpys_for_every_half():
    from mattebridge.core.image.half import from_half

    every = np.arange(2**16, dtype=np.uint16).view(np.float16)
    got = from_half(every)
    want = every.astype(np.float32)
    assert got.dtype == np.float32 and np.array_equal(got, want, equal_nan=True)
    finite = np.isfinite(want)
    assert np.array_equal(got[finite].view(np.uint32), want[finite].view(np.uint32))  # bit for bit, -0 too


def test_multi_layer_and_multi_part_and_luminance(tmp_path):
    import OpenImageIO as oiio

    a, b = rgb(seed=1), rgb(seed=2)
    chans = {f"{layer}.{c}": px[..., i] for layer, px in (("hero", a), ("bg", b)) for i, c in enumerate("RGB")}
    layered = write_exr(tmp_path / "layers.exr", chans, pixel_type="float")
    np.testing.assert_array_equal(read_plate(layered, "bg").pixels, b)
    with pytest.raises(MatteBridgeError, match=r"no layer 'nope'.*hero"):
        read_plate(layered, "nope")
    with pytest.raises(MatteBridgeError, match="--layer"):
        read_plate(layered)  # no plain RGB in the first part: ask for a layer

    # two parts, named
    specs = []
    for name in ("beauty", "plate"):
        s = oiio.ImageSpec(64, 48, 3, "float")
        s.attribute("name", name)
        specs.append(s)
    out = oiio.ImageOutput.create(str(tmp_path / "parts.exr"))
    assert out.open(str(tmp_path / "parts.exr"), specs)
    out.write_image(a)
    out.open(str(tmp_path / "parts.exr"), specs[1], "AppendSubimage")
    out.write_image(b)
    out.close()
    np.testing.assert_array_equal(read_plate(str(tmp_path / "parts.exr")).pixels, a)  # default: first part
    np.testing.assert_array_equal(read_plate(str(tmp_path / "parts.exr"), "plate").pixels, b)

    lum = write_exr(tmp_path / "y.exr", {"Y": a[..., 0]}, pixel_type="float")
    np.testing.assert_array_equal(read_plate(lum).pixels, np.repeat(a[..., :1], 3, axis=2))


@pytest.mark.parametrize("ext", ["dpx", "tif", "png", "jpg"])
def test_other_formats(tmp_path, ext):
    import OpenImageIO as oiio

    src = oiio.ImageBuf(str(FOOTAGE / "bedroom.1001.jpg"))
    path = str(tmp_path / f"p.{ext}")
    assert src.write(path), oiio.geterror()
    plate = read_plate(path)
    assert plate.pixels.shape == (540, 960, 3) and not plate.is_float
    reference = src.get_pixels(oiio.FLOAT)
    tol = 0.08 if ext == "jpg" else 2e-3
    assert np.abs(plate.pixels - reference).mean() < tol


@pytest.mark.parametrize("pixel_type", ["half", "float"])
def test_nan_and_inf_become_finite_before_the_model(tmp_path, pixel_type):
    pixels = rgb()
    pixels[3, 4] = [np.nan, np.inf, -np.inf]
    path = write_exr(tmp_path / "bad.exr", {c: pixels[..., i] for i, c in enumerate("RGB")}, pixel_type=pixel_type)
    plate = read_plate(path)
    assert np.isfinite(plate.pixels).all()
    assert plate.pixels[3, 4].tolist() == [0.0, 65504.0, -65504.0]
    view = model_view(
        plate, 32, DisplayTransform(STUDIO, "ACEScg", "sRGB - Display", "ACES 2.0 - SDR 100 nits (Rec.709)")
    )
    assert np.isfinite(view).all() and view.min() >= 0 and view.max() <= 1


def test_geometry_is_kept(tmp_path):
    px = rgb(20, 30)
    path = write_exr(
        tmp_path / "g.exr",
        {c: px[..., i] for i, c in enumerate("RGB")},
        display=(0, 0, 40, 25),
        data=(-5, 3, 30, 20),
        pixel_aspect=2.0,
    )
    g = read_header(path)
    assert g.display == (0, 0, 40, 25) and g.data == (-5, 3, 30, 20) and g.pixel_aspect == 2.0


@pytest.mark.parametrize(
    "view", [None, "sRGB - Display/Un-tone-mapped", "Rec.1886 Rec.709 - Display/Video (colorimetric)"]
)
def test_model_sees_an_independent_ocio_evaluation(tmp_path, view):
    """Blocks of 2x2 equal pixels: the area downsample to 256 is exact, so any difference is colour: the LUTs the
    model's input goes through on every device, against OCIO's CPU processor."""
    import PyOpenColorIO as ocio

    blocks = np.random.default_rng(3).random((256, 256, 3)).astype(np.float32) * 3 - 0.05
    pixels = np.kron(blocks, np.ones((2, 2, 1), np.float32))
    path = write_exr(tmp_path / "c.exr", {c: pixels[..., i] for i, c in enumerate("RGB")}, pixel_type="float")
    config, source = load_config(STUDIO)
    display, view_name = resolve_view(config, view, source)
    seen = model_view(read_plate(path), 256, DisplayTransform(STUDIO, "ACEScg", display, view_name))

    independent = (
        ocio.Config.CreateFromFile(STUDIO)
        .getProcessor(ocio.DisplayViewTransform(src="ACEScg", display=display, view=view_name))
        .getDefaultCPUProcessor()
    )
    expected = blocks.copy()
    independent.applyRGB(expected)
    error = np.abs(seen - np.clip(expected, 0, 1)).max(-1)
    if view is None:  # ACES 2.0 through the baked cube (core/image/lut.py): saturated colours near its creases
        assert np.quantile(error, 0.99) <= 1.5 / 255 and (error > 1 / 255).mean() <= 0.016 and error.max() <= 0.09
    else:  # a matrix and a curve: exact
        assert error.max() <= 1 / 255

    feed = ModelFeed([path], read_plate, 256, DisplayTransform(STUDIO, "ACEScg", display, view_name))
    np.testing.assert_allclose(feed[0].numpy().transpose(1, 2, 0), (seen - MEAN) / STD, atol=1e-5)
    feed.close()


def test_colorspace_resolution(tmp_path, monkeypatch):
    config, source = load_config(STUDIO)
    assert resolve_colorspace(config, "ACEScg", "", True, source) == "ACEScg"
    assert resolve_colorspace(config, None, "", True, source) == "ACEScg"  # scene_linear role
    jpg = read_plate(str(FOOTAGE / "bedroom.1001.jpg"))
    assert resolve_colorspace(config, None, jpg.colorspace, jpg.is_float, source) == "sRGB Encoded Rec.709 (sRGB)"
    with pytest.raises(MatteBridgeError, match=r"'ACEScgg' is not in .*ACES2065-1"):
        resolve_colorspace(config, "ACEScgg", "", True, source)
    with pytest.raises(MatteBridgeError, match=r"view 'Nope'.*Un-tone-mapped"):
        resolve_view(config, "sRGB - Display/Nope", source)
    monkeypatch.setenv("OCIO", "ocio://cg-config-latest")
    assert load_config(None)[1] == "ocio://cg-config-latest"
    with pytest.raises(MatteBridgeError, match="no-such.ocio"):
        load_config(str(tmp_path / "no-such.ocio"))


def test_sequence_patterns():
    assert frame_path("a.####.exr", 1001) == "a.1001.exr"
    assert frame_path("a.%04d.exr", 7) == "a.0007.exr"
    assert frame_path("a.####.exr", -3) == "a.-0003.exr"
    assert list(FrameRange.parse("1001-1003")) == [1001, 1002, 1003]
    assert list(FrameRange.parse("-2--1")) == [-2, -1]
    for bad in ("1003-1001", "", "10-x"):
        with pytest.raises(MatteBridgeError, match="^frames: "):
            FrameRange.parse(bad)
