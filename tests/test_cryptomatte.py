"""Cryptomatte ids, manifest, ranks, overlapping objects, and a real EXR written by write_matte: read back with
OIIO and decoded by a real Blender's compositor (its Cryptomatte node) in its own process."""

import json
import os
import re
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mattebridge.core.errors import MatteBridgeError
from mattebridge.core.image.cryptomatte import (
    cryptomatte_channels,
    cryptomatte_metadata,
    layer_key,
    manifest,
    mm3_hash32,
    name_to_float,
    shared_coverage,
)
from mattebridge.core.image.matte_io import read_metadata, write_matte
from mattebridge.core.image.plate import Geometry


def reference_mm3(data: bytes, seed: int = 0) -> int:
    """MurmurHash3_x86_32 written from the reference C, byte by byte (independent of the module's)."""

    def rotl(x, r):
        return ((x << r) | (x >> (32 - r))) & 0xFFFFFFFF

    def mix(k):
        k = (k * 0xCC9E2D51) & 0xFFFFFFFF
        k = rotl(k, 15)
        return (k * 0x1B873593) & 0xFFFFFFFF

    h = seed
    nblocks = len(data) // 4
    for i in range(nblocks):
        k = data[4 * i] | data[4 * i + 1] << 8 | data[4 * i + 2] << 16 | data[4 * i + 3] << 24
        h ^= mix(k)
        h = rotl(h, 13)
        h = (h * 5 + 0xE6546B64) & 0xFFFFFFFF
    tail, k = data[4 * nblocks :], 0
    if len(tail) == 3:
        k ^= tail[2] << 16
    if len(tail) >= 2:
        k ^= tail[1] << 8
    if len(tail) >= 1:
        k ^= tail[0]
        h ^= mix(k)
    h ^= len(data)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    return h ^ (h >> 16)


NAMES = ["torus", "", "a", "ab", "abc", "abcd", "hero_actor", "bunny", "Ünïcødé 名前", "x" * 37, "car/wheel.L"]


def test_spec_example():
    assert mm3_hash32("torus") == 4053562365


@pytest.mark.parametrize("name", NAMES)
def test_hash_matches_independent_implementation(name):
    assert mm3_hash32(name) == reference_mm3(name.encode("utf-8"))


def test_manifest_matches_spec_example():
    # the spec's example manifest: {"bunny":"13851a76", "default":"42c9679f"}
    assert json.loads(manifest(["default", "bunny"])) == {"bunny": "13851a76", "default": "42c9679f"}


def test_ids_are_normal_floats_that_round_trip():
    for name in NAMES + [f"obj{i}" for i in range(300)]:
        f = name_to_float(name)
        bits = struct.unpack("<I", struct.pack("<f", float(f)))[0]  # through a Python float and back
        assert 0 < (bits >> 23) & 0xFF < 255, name  # never zero/denormal, Inf or NaN
        h = reference_mm3(name.encode("utf-8"))
        assert bits == (h if 0 < (h >> 23) & 0xFF < 255 else h ^ (1 << 23)), name
        assert int(np.float32(f).view(np.uint32)) == bits


def test_exponent_flip_happens():
    flipped = [n for n in (f"n{i}" for i in range(5000)) if (mm3_hash32(n) >> 23) & 0xFF in (0, 255)]
    assert flipped, "expected some names with exponent 0 or 255 among 5000"
    for n in flipped:
        assert int(np.float32(name_to_float(n)).view(np.uint32)) == mm3_hash32(n) ^ (1 << 23)


def test_metadata_keys():
    meta = cryptomatte_metadata("CryptoObject", ["a", "b"])
    key = f"{reference_mm3(b'CryptoObject'):08x}"[:7]
    assert layer_key("CryptoObject") == key
    assert meta == {
        f"cryptomatte/{key}/name": "CryptoObject",
        f"cryptomatte/{key}/hash": "MurmurHash3_32",
        f"cryptomatte/{key}/conversion": "uint32_to_float32",
        f"cryptomatte/{key}/manifest": manifest(["a", "b"]),
    }


def _mattes(h=6, w=8):
    a = np.zeros((h, w), np.float32)
    b = np.zeros((h, w), np.float32)
    c = np.zeros((h, w), np.float32)
    a[:, :4] = 1.0
    b[:, 3:6] = 0.6  # overlaps a in column 3 (a ranks first there)
    c[:, 5:] = 0.8  # overlaps b in column 5 (c ranks first there)
    a[0, 0] = 0.25
    return {"alpha_obj": a, "beta": b, "gamma": c}


def _write_crypto(tmp_path, mattes) -> str:
    """`mattes` as a Cryptomatte EXR through the product's writer (float, lossless)."""
    path = str(tmp_path / "crypto.exr")
    write_matte(
        path,
        cryptomatte_channels("CryptoObject", mattes),
        Geometry((0, 0, 8, 6), (0, 0, 8, 6)),
        {},
        pixel_type="float",
        standard_metadata=cryptomatte_metadata("CryptoObject", mattes),
    )
    return path


def expected_coverage(mattes):
    """The rule, written out: alphas as they are where they add up to at most 1, else scaled to add up to 1."""
    a = np.stack([np.clip(np.asarray(m, np.float64), 0, 1) for m in mattes.values()])
    return dict(zip(mattes, a / np.maximum(a.sum(0), 1.0)))


def test_channels_rank_by_coverage():
    ch = cryptomatte_channels("CryptoObject", _mattes())
    assert list(ch) == [f"CryptoObject{k:02d}.{c}" for k in (0, 1) for c in "RGBA"]  # 3 objects -> 4 ranks
    ida, idb, idc = (name_to_float(n) for n in ("alpha_obj", "beta", "gamma"))
    r0, c0 = ch["CryptoObject00.R"], ch["CryptoObject00.G"]
    r1, c1 = ch["CryptoObject00.B"], ch["CryptoObject00.A"]
    # column 3: alpha_obj 1.0 over beta 0.6 -> they share the pixel 1 : 0.6, adding up to 1
    assert r0[2, 3] == ida and np.isclose(c0[2, 3], 1 / 1.6) and r1[2, 3] == idb and np.isclose(c1[2, 3], 0.6 / 1.6)
    assert r0[2, 5] == idc and np.isclose(c0[2, 5], 0.8 / 1.4) and r1[2, 5] == idb and np.isclose(c1[2, 5], 0.6 / 1.4)
    assert r0[2, 4] == idb and c0[2, 4] == np.float32(0.6) and c1[2, 4] == 0 and r1[2, 4] == 0  # one object: as is
    assert r0[2, 1] == ida and c0[2, 1] == 1.0 and r0[0, 0] == ida and c0[0, 0] == 0.25
    assert r0[2, 7] == idc and c0[2, 7] == np.float32(0.8)
    assert not ch["CryptoObject01.R"].any() and not ch["CryptoObject01.G"].any()  # never 3 at once
    assert all(v.dtype == np.float32 for v in ch.values())


def test_fully_overlapping_objects_share_the_pixel():
    for n in (2, 3, 5):
        mattes = {f"obj{i}": np.ones((3, 4), np.float32) for i in range(n)}
        ch = cryptomatte_channels("CryptoObject", mattes)
        covs = np.stack([ch[k] for k in ch if k.endswith((".G", ".A"))])
        assert np.allclose(covs.sum(0), 1.0, atol=1e-6) and covs.sum(0).max() <= 1 + 1e-6
        for name in mattes:
            assert np.allclose(_decode(ch, "CryptoObject", manifest(mattes), name), 1 / n)


def test_edge_to_edge_objects_keep_their_alphas():
    a = np.array([[1.0, 0.75, 0.5, 0.0]], np.float32)
    b = np.array([[0.0, 0.25, 0.5, 1.0]], np.float32)  # anti-aliased edge: the alphas add up to exactly 1
    ch = cryptomatte_channels("CryptoObject", {"a": a, "b": b})
    for name, alpha in (("a", a), ("b", b)):
        assert np.array_equal(_decode(ch, "CryptoObject", manifest("ab"), name), alpha)


def test_shared_coverage_cleans_input():
    got = shared_coverage(np.array([[[np.nan, -1, 2, 0.5]], [[0.5, 0.5, 0.5, 0.5]]], np.float32))
    assert np.allclose(got, [[[0, 0, 1 / 1.5, 0.5]], [[0.5, 0.5, 0.5 / 1.5, 0.5]]]) and got.dtype == np.float32


_SHAPE = (5, 7)
_alpha = hnp.arrays(np.float32, _SHAPE, elements=st.one_of(st.sampled_from([0.0, 1.0, 0.5]), st.floats(0, 1, width=32)))


@settings(max_examples=60, deadline=None)
@given(st.lists(_alpha, min_size=1, max_size=5))
def test_overlap_invariants(alphas):
    names = [f"obj{i}" for i in range(len(alphas))]
    mattes = dict(zip(names, alphas))
    ch = cryptomatte_channels("CryptoObject", mattes)
    ranks = [
        (ch[f"CryptoObject{k:02d}.{i}"], ch[f"CryptoObject{k:02d}.{c}"])
        for k in range(len(ch) // 4)
        for i, c in (("R", "G"), ("B", "A"))
    ]
    ids = np.stack([r[0] for r in ranks])
    cov = np.stack([r[1] for r in ranks]).astype(np.float64)
    assert cov.sum(0).max() <= 1 + 1e-6  # a pixel's coverages never add up to more than the pixel
    assert (np.diff(cov, axis=0) <= 0).all()  # highest first
    assert ((ids == 0) == (cov == 0)).all()  # empty ranks: id 0, coverage 0
    stack = np.stack(alphas).astype(np.float64)
    total = stack.sum(0)
    want = expected_coverage(mattes)
    man = manifest(names)
    decoded = {n: _decode(ch, "CryptoObject", man, n) for n in names}
    for n in names:
        assert np.allclose(decoded[n], want[n], rtol=0, atol=1e-6), n
        alone = total <= 1  # no overlap (one object, or edge to edge): exactly the object's matte
        assert np.array_equal(decoded[n][alone], mattes[n][alone]), n
    union = sum(decoded.values())
    assert np.allclose(union, np.minimum(total, 1.0), atol=1e-6)  # all ids together: the cutout's alpha


def test_channels_errors():
    with pytest.raises(MatteBridgeError):
        cryptomatte_channels("C", {})
    with pytest.raises(MatteBridgeError):
        cryptomatte_channels("C", {"a": np.zeros((2, 2)), "b": np.zeros((3, 2))})


def _decode(channels, layer, manifest_json, name):
    """A decoder's view, from the spec alone: the name's id from the manifest's hex (the float's bits), matched
    bit for bit against every rank's id channel; the coverages of the ranks that match, summed."""
    want = np.uint32(int(json.loads(manifest_json)[name], 16))
    out = np.float32(0)
    levels = sorted({m.group(1) for k in channels for m in [re.fullmatch(re.escape(layer) + r"(\d+)\.[RGBA]", k)] if m})
    for lv in levels:
        for idc, covc in (("R", "G"), ("B", "A")):
            ids, cov = channels[f"{layer}{lv}.{idc}"], channels[f"{layer}{lv}.{covc}"]
            out = out + np.where(np.asarray(ids, np.float32).view(np.uint32) == want, cov, np.float32(0))
    return out


def _read_exr(path):
    import OpenImageIO as oiio

    inp = oiio.ImageInput.open(path)
    spec = inp.spec()
    px = inp.read_image(0, 0, 0, spec.nchannels, "float")
    inp.close()
    return spec, {n: px[:, :, i] for i, n in enumerate(spec.channelnames)}


def test_exr_round_trip(tmp_path):
    mattes = _mattes()
    ch = cryptomatte_channels("CryptoObject", mattes)
    meta = cryptomatte_metadata("CryptoObject", mattes)
    geo = Geometry(display=(0, 0, 10, 8), data=(1, 1, 8, 6))
    path = str(tmp_path / "crypto.1001.exr")
    write_matte(path, ch, geo, meta, pixel_type="float")
    spec, back = _read_exr(path)
    assert str(spec.format) == "float"
    assert set(back) == set(ch)
    for n in ch:  # bit exact: ids are float bit patterns
        assert np.array_equal(back[n].view(np.uint32), ch[n].view(np.uint32)), n
    header = read_metadata(path)
    key = layer_key("CryptoObject")
    assert header[f"cryptomatte/{key}/name"] == "CryptoObject"
    assert header[f"cryptomatte/{key}/hash"] == "MurmurHash3_32"
    assert header[f"cryptomatte/{key}/conversion"] == "uint32_to_float32"
    man = header[f"cryptomatte/{key}/manifest"]
    assert sorted(json.loads(man)) == sorted(mattes)
    for name, cover in expected_coverage(mattes).items():
        assert np.allclose(_decode(back, "CryptoObject", man, name), cover), name


def test_exr_header_is_what_decoders_look_for(tmp_path):
    import OpenImageIO as oiio

    mattes = _mattes()
    path = _write_crypto(tmp_path, mattes)
    inp = oiio.ImageInput.open(path)
    names = {a.name for a in inp.spec().extra_attribs}
    inp.close()
    assert f"cryptomatte/{layer_key('CryptoObject')}/name" in names


def test_exr_metadata_follows_the_spec(tmp_path):
    """The header as OIIO reads it, against spec v1.2 "Metadata" and "Manifest": per type a key of at most 7
    characters (here the first 7 hex digits of the type name's hash), string attributes name/hash/conversion/
    manifest, the manifest a JSON object name -> 8 hex digits of the id float's bits; every id in the pixels
    is in the manifest, and the rank layers are {type}00, {type}01, ... with R/G/B/A."""
    import OpenImageIO as oiio

    mattes = _mattes()
    path = _write_crypto(tmp_path, mattes)
    inp = oiio.ImageInput.open(path)
    spec = inp.spec()
    attrs = {a.name: a for a in spec.extra_attribs}
    inp.close()
    crypto = {n: a for n, a in attrs.items() if n.startswith("cryptomatte/")}
    keys = {n.split("/")[1] for n in crypto}
    assert keys == {f"{reference_mm3(b'CryptoObject'):08x}"[:7]}
    key = keys.pop()
    assert re.fullmatch(r"[0-9a-f]{7}", key)
    assert set(crypto) == {f"cryptomatte/{key}/{f}" for f in ("name", "hash", "conversion", "manifest")}
    assert all(str(a.type) == "string" for a in crypto.values())
    assert spec.getattribute(f"cryptomatte/{key}/name") == "CryptoObject"
    assert spec.getattribute(f"cryptomatte/{key}/hash") == "MurmurHash3_32"
    assert spec.getattribute(f"cryptomatte/{key}/conversion") == "uint32_to_float32"
    man = json.loads(spec.getattribute(f"cryptomatte/{key}/manifest"))
    assert set(man) == set(mattes)
    for name, hexid in man.items():
        assert re.fullmatch(r"[0-9a-f]{8}", hexid)
        h = reference_mm3(name.encode("utf-8"))
        assert int(hexid, 16) == (h ^ (1 << 23) if (h >> 23) & 0xFF in (0, 255) else h)
    assert str(spec.format) == "float"
    assert sorted(spec.channelnames) == sorted(f"CryptoObject{k:02d}.{c}" for k in (0, 1) for c in "RGBA")
    _, px = _read_exr(path)
    ids = {int(b) for n, p in px.items() if n.endswith((".R", ".B")) for b in np.unique(p.view(np.uint32))}
    assert ids - {0} == {int(h, 16) for h in man.values()}


# --- an independent decoder: a real Blender's compositor ---------------------------------------------------
REPO = Path(__file__).resolve().parent.parent
BLENDER_PYTHON = os.environ.get("MATTEBRIDGE_BLENDER_PYTHON") or str(REPO / ".venv-blender" / "bin" / "python")

# Runs inside Blender (bpy): loads our EXR as a multilayer image into a compositor Cryptomatte node (source
# Image) and renders its Matte output once per matte_id to a 32-bit float EXR; no scene render is involved
# (the node tree has no Render Layers node). Arguments: a JSON file in, a JSON file out.
BLENDER_DECODE = r"""
import json, sys, traceback
import bpy

args = json.load(open(sys.argv[-2]))
result = {"renders": {}, "hashes": {}}
try:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    tree = bpy.data.node_groups.new("decode", "CompositorNodeTree")
    scene.compositing_node_group = tree
    tree.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
    node = tree.nodes.new("CompositorNodeCryptomatteV2")
    node.source = "IMAGE"
    node.image = bpy.data.images.load(args["exr"])
    node.layer_name = args["layer"]
    out = tree.nodes.new("NodeGroupOutput")
    tree.links.new(node.outputs["Matte"], out.inputs[0])
    render = scene.render
    render.resolution_x, render.resolution_y = args["size"]
    render.resolution_percentage = 100
    render.image_settings.file_format = "OPEN_EXR"
    render.image_settings.color_depth = "32"
    scene.view_settings.view_transform = "Standard"
    result["image_type"] = node.image.type
    for i, matte_id in enumerate(args["matte_ids"]):
        node.matte_id = matte_id
        result["hashes"][matte_id] = [[e.name, e.encoded_hash] for e in node.entries]
        render.filepath = args["out"] + f"/matte{i}.exr"
        bpy.ops.render.render(write_still=True)
        result["renders"][matte_id] = render.filepath
except Exception:
    result["script_error"] = traceback.format_exc()
json.dump(result, open(sys.argv[-1], "w"))
"""


def blender_decode(tmp_path, exr, size, matte_ids, layer="CryptoObject"):
    assert os.path.exists(BLENDER_PYTHON), f"no Blender Python at {BLENDER_PYTHON}: run scripts/setup-blender.sh"
    work = tmp_path / "blender"
    (work / "tmp").mkdir(parents=True)
    script, arg_path, out_path = work / "decode.py", work / "args.json", work / "result.json"
    script.write_text(BLENDER_DECODE)
    arg_path.write_text(
        json.dumps({"exr": str(exr), "size": list(size), "matte_ids": matte_ids, "layer": layer, "out": str(work)})
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "OCIO", "VIRTUAL_ENV")}
    env["BLENDER_USER_RESOURCES"] = str(work / "user")
    env["TMPDIR"] = str(work / "tmp")
    proc = subprocess.run(
        [BLENDER_PYTHON, str(script), str(arg_path), str(out_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out_path.exists(), f"Blender exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    result = json.loads(out_path.read_text())
    assert "script_error" not in result, result["script_error"] + proc.stderr[-3000:]
    mattes = {}
    for matte_id, path in result["renders"].items():
        _, px = _read_exr(path)
        assert np.array_equal(px["R"], px["G"]) and np.array_equal(px["R"], px["B"])
        mattes[matte_id] = px["R"]
    return mattes, result


def test_blender_cryptomatte_node_decodes_overlapping_objects(tmp_path):
    """Two objects overlapping (fully in the middle, partly in the top rows), one partly transparent at the
    right; Blender's Cryptomatte node picks each by name, and both together: each decodes to its share of the
    pixel, exactly its alpha where it is alone, and together to min(1, sum of alphas)."""
    h, w = 24, 32
    hero, prop = np.zeros((h, w), np.float32), np.zeros((h, w), np.float32)
    hero[:, :20] = 1.0
    prop[:, 12:] = 1.0
    prop[:, 28:] = 0.4
    hero[:4] *= 0.7  # overlap 0.7 + 1 in the top rows
    hero[20:, 2:6] = np.linspace(0.1, 0.9, 4, dtype=np.float32)  # soft edge, alone
    prop[20:, 12:16] = 0.25  # overlap 1 + 0.25
    mattes = {"hero": hero, "prop.L": prop}
    exr = tmp_path / "crypto.1001.exr"
    channels = dict(cryptomatte_channels("CryptoObject", mattes), **{f"{n}.A": a for n, a in mattes.items()})
    write_matte(
        str(exr),
        channels,
        Geometry((0, 0, w, h), (0, 0, w, h)),
        {},
        pixel_type="float",
        standard_metadata=cryptomatte_metadata("CryptoObject", mattes),
    )

    got, result = blender_decode(tmp_path, exr, (w, h), ["hero", "prop.L", "hero,prop.L"])
    assert result["image_type"] == "MULTILAYER"
    for name in mattes:  # Blender's own hash of the name is our id, bit for bit
        ((entry_name, encoded),) = result["hashes"][name]
        assert entry_name == name
        assert np.float32(encoded).view(np.uint32) == np.uint32(int(json.loads(manifest(mattes))[name], 16))
    want = expected_coverage(mattes)
    for name, alpha in mattes.items():
        assert np.allclose(got[name], want[name], rtol=0, atol=1e-6), name
        alone = (hero + prop) <= 1
        assert np.array_equal(got[name][alone], alpha[alone]), name
    assert np.isclose(got["hero"][10, 15], 0.5) and np.isclose(got["prop.L"][10, 15], 0.5)  # both fully: half each
    assert np.isclose(got["hero"][1, 15], 0.7 / 1.7) and np.isclose(got["prop.L"][1, 15], 1 / 1.7)
    both = got["hero,prop.L"]
    assert np.allclose(both, np.minimum(hero + prop, 1.0), rtol=0, atol=1e-6)
    assert (got["hero"] + got["prop.L"]).max() <= 1 + 1e-6
