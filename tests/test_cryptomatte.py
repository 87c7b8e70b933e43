"""Cryptomatte ids, manifest, ranks, and a real EXR written by write_matte and read back with OIIO."""
import json
import struct

import numpy as np
import pytest

from mattebridge.core.cryptomatte import (cryptomatte_channels, cryptomatte_metadata, layer_key, manifest,
                                          mm3_hash32, name_to_float)
from mattebridge.core.errors import MatteBridgeError
from mattebridge.core.matte_io import read_metadata, write_matte
from mattebridge.core.plate import Geometry


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
    tail, k = data[4 * nblocks:], 0
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
    assert meta == {f"cryptomatte/{key}/name": "CryptoObject", f"cryptomatte/{key}/hash": "MurmurHash3_32",
                    f"cryptomatte/{key}/conversion": "uint32_to_float32", f"cryptomatte/{key}/manifest": manifest(["a", "b"])}


def _mattes(h=6, w=8):
    a = np.zeros((h, w), np.float32)
    b = np.zeros((h, w), np.float32)
    c = np.zeros((h, w), np.float32)
    a[:, :4] = 1.0
    b[:, 3:6] = 0.6  # overlaps a in column 3 (a ranks first there)
    c[:, 5:] = 0.8  # overlaps b in column 5 (c ranks first there)
    a[0, 0] = 0.25
    return {"alpha_obj": a, "beta": b, "gamma": c}


def test_channels_rank_by_coverage():
    ch = cryptomatte_channels("CryptoObject", _mattes())
    assert list(ch) == [f"CryptoObject{l:02d}.{c}" for l in (0, 1) for c in "RGBA"]  # 3 objects -> 4 ranks
    ida, idb, idc = (name_to_float(n) for n in ("alpha_obj", "beta", "gamma"))
    r0, c0 = ch["CryptoObject00.R"], ch["CryptoObject00.G"]
    r1, c1 = ch["CryptoObject00.B"], ch["CryptoObject00.A"]
    assert r0[2, 3] == ida and c0[2, 3] == 1.0 and r1[2, 3] == idb and np.isclose(c1[2, 3], 0.6)
    assert r0[2, 5] == idc and np.isclose(c0[2, 5], 0.8) and r1[2, 5] == idb
    assert r0[2, 4] == idb and c1[2, 4] == 0 and r1[2, 4] == 0  # one object: rank 1 empty, id 0
    assert r0[0, 0] == ida and c0[0, 0] == 0.25
    assert not ch["CryptoObject01.R"].any() and not ch["CryptoObject01.G"].any()  # never 3 at once
    assert all(v.dtype == np.float32 for v in ch.values())


def test_channels_errors():
    with pytest.raises(MatteBridgeError):
        cryptomatte_channels("C", {})
    with pytest.raises(MatteBridgeError):
        cryptomatte_channels("C", {"a": np.zeros((2, 2)), "b": np.zeros((3, 2))})


def _decode(channels, layer, manifest_json, name):
    """A decoder's view: sum the coverage of every rank whose id is `name`'s (via the manifest)."""
    bits = int(json.loads(manifest_json)[name], 16)
    want = np.array([bits], np.uint32).view(np.float32)[0]
    out = 0
    for l in range(len(channels) // 4):
        for idc, covc in (("R", "G"), ("B", "A")):
            ids, cov = channels[f"{layer}{l:02d}.{idc}"], channels[f"{layer}{l:02d}.{covc}"]
            out = out + np.where(ids == want, cov, 0)
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
    for name, alpha in mattes.items():
        assert np.allclose(_decode(back, "CryptoObject", man, name), alpha), name


def test_exr_header_is_what_decoders_look_for(tmp_path):
    import OpenImageIO as oiio

    mattes = _mattes()
    path = str(tmp_path / "crypto.exr")
    write_matte(path, cryptomatte_channels("CryptoObject", mattes), Geometry((0, 0, 8, 6), (0, 0, 8, 6)), {},
                pixel_type="float", standard_metadata=cryptomatte_metadata("CryptoObject", mattes))
    inp = oiio.ImageInput.open(path)
    names = {a.name for a in inp.spec().extra_attribs}
    inp.close()
    assert f"cryptomatte/{layer_key('CryptoObject')}/name" in names
