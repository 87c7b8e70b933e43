"""Hostile input: deeply nested / non-finite / non-UTF-8 JSON on the wire and in prompts files, damaged EXRs.

Every expected failure is one line naming the file, frame or field (a ProtocolError / MatteBridgeError), never a
traceback, and nothing a client sends ends the server's receive loop.
"""

from __future__ import annotations

import json
import os
import random
import struct

import numpy as np
import pytest
from conftest import REPO, model_args, run_cli, write_exr
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mattebridge.core.errors import MatteBridgeError
from mattebridge.core.image.plate import read_header, read_mask, read_plate
from mattebridge.core.wire.prompts import Prompts
from mattebridge.core.wire.protocol import (
    ERRORS,
    MAX_JSON_DEPTH,
    TAG,
    Message,
    ProtocolError,
    decode,
    encode,
    json_depth,
)

CORRUPT = REPO / "tests" / "data" / "corrupt"  # damaged EXRs from OpenEXR's own test suite (see its README.md)
FUZZ = settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
HEADER = json.dumps({"msg_id": "m1", "msg_type": "hello", "version": 1}).encode()


def one_line(text: str) -> bool:
    return len(str(text).splitlines()) == 1


def nested(depth: int, open_=b"[", close=b"]", inner=b"1") -> bytes:
    return open_ * depth + inner + close * depth


# --- 4. nesting depth: the wire ----------------------------------------------------------------------
def test_depth_prescan_counts_brackets_outside_strings():
    assert json_depth(b"{}") == 1 and json_depth(b'[[], {"a": [1]}]') == 3
    assert json_depth(b'{"a": "[[[[{{{{"}') == 1  # brackets inside strings do not count
    assert json_depth(b'["\\"[[[[", [2]]') == 2  # nor do they after an escaped quote
    assert json_depth(b"[" * 5000) == 5000  # never closed: the parser would still recurse that deep
    doc = Prompts()
    doc.add_point("hero", 1, 10, 10)
    doc.set_box("hero", 2, (1, 2, 3, 4))
    assert json_depth(doc.dumps().encode()) <= 8 < MAX_JSON_DEPTH  # a real prompts document, with room to spare


@pytest.mark.parametrize("which", ["header", "content"])
def test_deeply_nested_frame_is_a_bad_message_not_a_recursion_error(which):
    deep = nested(1000)  # 2 KB
    frames = [TAG, deep, b"{}"] if which == "header" else [TAG, HEADER, deep]
    with pytest.raises(ProtocolError) as info:
        decode(frames)
    assert info.value.code == "bad_message" and one_line(info.value)
    assert f"{which} is not JSON" in str(info.value) and "1000 levels" in str(info.value)
    for depth in (MAX_JSON_DEPTH, MAX_JSON_DEPTH + 1):  # the limit is exact: 32 passes, 33 does not
        doc = b'{"a": ' * depth + b"1" + b"}" * depth
        if depth <= MAX_JSON_DEPTH:
            assert decode([TAG, HEADER, doc]).content["a"]
        else:
            with pytest.raises(ProtocolError, match="33 levels"):
                decode([TAG, HEADER, doc])


@pytest.mark.parametrize(
    "content,reason",
    [
        (b'{"x": NaN}', "NaN"),
        (b'{"x": Infinity}', "Infinity"),
        (b'{"x": -Infinity}', "-Infinity"),
        (b'{"x": 1e999}', "out of range"),
        (b'{"x": "\\ud800"}', "surrogate"),
        (b'{"\\udfff": 1}', "surrogate"),
        (b'{"x": "\xff\xfe"}', "utf-8"),
        (b'{"x": ' + b"9" * 5000 + b"}", "digits"),
    ],
)
def test_non_finite_numbers_invalid_unicode_are_bad_messages(content, reason):
    with pytest.raises(ProtocolError) as info:
        decode([TAG, HEADER, content])
    assert info.value.code == "bad_message" and one_line(info.value) and reason in str(info.value)


def test_json_that_is_fine_still_decodes():
    content = {"big": 10**400, "emoji": "\U0001f600", "neg": -0.0, "tiny": 5e-324, "points": [[1.5, 2, True]]}
    msg = decode([TAG, HEADER, json.dumps(content).encode(), b"\0" * 8])  # ensure_ascii: a surrogate *pair*
    assert msg.content == content and msg.buffers == [b"\0" * 8]


def test_server_answers_a_deep_message_with_an_error_and_keeps_serving(mb_server):
    import zmq

    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 20000)
    sock.connect(mb_server.address)
    try:
        for frames in (
            [TAG, HEADER, nested(1000)],  # 2 KB nested 1000 deep: was a RecursionError, the server died
            [TAG, nested(1000, b"{", b"}", b'"a":1'), b"{}"],
            [TAG, HEADER, b"[" * 20000],
            [TAG, HEADER, b'{"x": NaN}'],
            [TAG, HEADER, b'{"x": "\\udc80"}'],
            [TAG, HEADER, b"\xff" * 10],
        ):
            sock.send_multipart(frames)
            reply = decode(sock.recv_multipart())
            assert reply.msg_type == "error" and reply.content["code"] == "bad_message", reply.content
            assert one_line(reply.content["message"])
        sock.send_multipart(encode(Message("hello")))
        reply = decode(sock.recv_multipart())
        assert reply.msg_type == "hello_reply" and reply.content["protocol"] == 1
    finally:
        sock.close()
    assert mb_server.process.poll() is None
    assert "Traceback" not in mb_server.log()


# --- the decoder, fuzzed -------------------------------------------------------------------------------
def _json_leaves():
    return (
        st.none()
        | st.booleans()
        | st.integers()
        | st.integers(min_value=10**300, max_value=10**400)
        | st.floats(allow_nan=True, allow_infinity=True)
        | st.text(max_size=20)
    )


json_docs = st.recursive(
    _json_leaves(),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=25,
)

# raw JSON tokens a serialiser would never write; spliced into otherwise valid documents
HOSTILE_TOKENS = [
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"1e999",
    b"-1e999",
    b"1" + b"0" * 400,
    b"9" * 5000,
    b'"\\ud800"',
    b'"\\udc00\\ud800"',
    b'"\\ud83d\\ude00"',
    b'"\xff"',
    b'"\xed\xa0\x80"',
    b'"\xc0\xaf"',
    nested(40),
    nested(33, b"{", b"}", b'"k": 1'),
    b"[" * 3000,
    b"]" * 10,
    b'"\\',
    b"\x00",
    b"true",
]


def mostly(main, rare, odds: int = 4):
    """`main`, and one time in `odds` + 1 `rare` (st.one_of would pick each about equally often)."""
    return st.integers(0, odds).flatmap(lambda k: rare if k == 0 else main)


hostile_token = mostly(st.sampled_from(HOSTILE_TOKENS), st.binary(max_size=12), 3)
SLOT = "\x00slot\x00"


@st.composite
def with_tokens(draw, docs):
    """A JSON text of a drawn document whose slots (some of its strings) hold raw hostile tokens instead."""
    doc = draw(docs)
    text = json.dumps(doc).encode()  # json.dumps itself writes NaN/Infinity for non-finite floats
    slot = json.dumps(SLOT).encode()
    while slot in text:
        text = text.replace(slot, draw(hostile_token), 1)
    if draw(st.integers(0, 5)) == 0:  # and sometimes a token anywhere (mostly not JSON any more)
        cut = draw(st.integers(0, len(text)))
        text = text[:cut] + draw(hostile_token) + text[cut:]
    return text


json_with_slots = st.recursive(
    _json_leaves() | st.just(SLOT),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8) | st.just(SLOT), kids, max_size=4),
    max_leaves=25,
)
hostile_json = with_tokens(json_with_slots)
content_json = with_tokens(
    st.dictionaries(st.text(max_size=8), mostly(json_with_slots, st.just(SLOT), 2), min_size=1, max_size=4)
)
header_json = with_tokens(
    st.fixed_dictionaries(
        {
            "msg_id": mostly(st.just("m1"), _json_leaves() | st.just(SLOT)),
            "msg_type": mostly(st.sampled_from(["hello", "prompt", "nope"]), _json_leaves() | st.just(SLOT)),
            "version": mostly(st.just(1), _json_leaves() | st.just(SLOT)),
        },
        optional={
            "session": mostly(st.text(max_size=8), json_with_slots),
            "parent_id": mostly(st.just("p"), json_with_slots),
        },
    )
)

frames_strategy = mostly(
    st.tuples(
        mostly(st.just(TAG), st.sampled_from([b"mattebridg", b"", TAG + b"\0"]), 9),
        mostly(header_json, hostile_json, 9),
        mostly(content_json, hostile_json),
        st.lists(st.binary(max_size=16), max_size=3),
    ).map(lambda t: [t[0], t[1], t[2], *t[3]]),
    st.lists(st.binary(max_size=64), max_size=6),
)  # anything at all


@FUZZ
@given(frames=frames_strategy)
@example(frames=[TAG, HEADER, nested(1000)])  # the 2 KB message that killed the server
@example(frames=[TAG, b"[" * 3000, b"{}"])
@example(frames=[TAG, HEADER, b'{"x": [1, NaN, 1e999, "\\ud800"]}'])
@example(frames=[TAG, HEADER, b'{"x": "\xc0\xaf"}'])
def test_decode_fuzz_raises_only_protocol_errors(frames):
    try:
        msg = decode(frames, max_bytes=1 << 16)
    except ProtocolError as e:
        assert e.code in ERRORS and one_line(e), (e.code, str(e))
        return
    assert isinstance(msg.content, dict) and isinstance(msg.msg_id, str) and isinstance(msg.msg_type, str)
    assert isinstance(msg.version, int) and isinstance(msg.session, str)
    json.dumps(msg.content, allow_nan=False).encode("utf-8")  # finite, encodable: safe to log, echo, re-send


# --- 4. nesting depth and non-finite numbers: prompts files ------------------------------------------
def _load_error(path) -> str:
    with pytest.raises(MatteBridgeError) as info:
        Prompts.load(str(path))
    message = str(info.value)
    assert one_line(message) and message.startswith(str(path) + ": "), message
    return message


def test_prompts_file_nested_5000_deep_is_one_error_line(tmp_path):
    (tmp_path / "deep.json").write_bytes(nested(5000))
    assert "nested 5000 levels deep" in _load_error(tmp_path / "deep.json")
    (tmp_path / "deep_obj.json").write_bytes(b'{"objects": ' + nested(5000) + b"}")
    assert "not valid JSON" in _load_error(tmp_path / "deep_obj.json")


@pytest.mark.parametrize(
    "token,reason",
    [
        ("NaN", "NaN is not a JSON number"),
        ("Infinity", "Infinity"),
        ("-Infinity", "-Infinity"),
        ("1e999", "out of range"),
    ],
)
def test_prompts_file_with_non_finite_coordinates_is_refused(tmp_path, token, reason):
    text = '{"version": 1, "objects": [{"name": "hero", "frames": [{"frame": 1, "points": [{"x": %s, "y": 5}]}]}]}'
    (tmp_path / "p.json").write_text(text % token)
    assert reason in _load_error(tmp_path / "p.json")


def test_prompts_file_errors_name_the_file(tmp_path):
    (tmp_path / "empty.json").write_bytes(b"")
    (tmp_path / "latin1.json").write_bytes(b'{"objects": [{"name": "caf\xe9"}]}')
    (tmp_path / "surrogate.json").write_bytes(b'{"objects": [{"name": "\\ud800"}]}')
    for name in ("empty.json", "latin1.json", "surrogate.json"):
        assert "not valid JSON" in _load_error(tmp_path / name)
    assert "cannot read prompts file" in _load_error(tmp_path / "missing.json")
    assert "cannot read prompts file" in _load_error(tmp_path)  # a folder
    good = Prompts()
    good.add_point("hero", 1001, 10.5, 20)
    good.set_box("prop", 1002, (1, 2, 30, 40))
    (tmp_path / "good.json").write_text(good.dumps())
    assert Prompts.load(str(tmp_path / "good.json")).to_json() == good.to_json()


def test_track_with_a_deep_prompts_file_exits_2_with_one_line(tmp_path):
    for f in (1, 2):
        write_exr(tmp_path / f"plate.{f:04d}.exr", {c: np.full((16, 24), 0.5, np.float32) for c in "RGB"})
    deep = tmp_path / "deep.json"
    deep.write_bytes(nested(5000))
    code, _, err = run_cli(
        "track",
        tmp_path / "plate.####.exr",
        "--frames",
        "1-2",
        "--prompts",
        deep,
        "--out",
        tmp_path / "out" / "m.####.exr",
        "--colorspace",
        "ACEScg",
        "--device",
        "cpu",
    )
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"mattebridge: error: {deep}: ") and "5000 levels" in lines[0], err
    assert not (tmp_path / "out").exists()


# --- prompts parsing, fuzzed ---------------------------------------------------------------------------
leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.integers(10**300, 10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["nan", "inf", "-inf", "1e999", "12"]),
    st.text(max_size=10),
    st.just(SLOT),
)  # SLOT: a raw hostile token when the document is a file
anything = st.recursive(
    leaf,
    lambda kids: st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=6), kids, max_size=4),
    max_leaves=20,
)
value = mostly(leaf, anything, 2)  # mostly scalars, sometimes any shape
point = mostly(st.fixed_dictionaries({"x": value, "y": value}, optional={"positive": value}), value)
frame = mostly(
    st.fixed_dictionaries(
        {"frame": value},
        optional={
            "points": mostly(st.lists(point, max_size=3), value),
            "box": mostly(st.lists(value, min_size=3, max_size=5), value),
            "mask": value,
        },
    ),
    value,
)
name = mostly(st.sampled_from(["hero", "a.b", "main-2"]), st.sampled_from(["../x", "", ".x", "\x00"]) | value)
obj = mostly(
    st.fixed_dictionaries({"name": name}, optional={"frames": mostly(st.lists(frame, max_size=3), value)}), value
)
prompts_docs = mostly(
    st.fixed_dictionaries(
        {"objects": mostly(st.lists(obj, min_size=1, max_size=3), value)},
        optional={"version": mostly(st.just(1), value)},
    ),
    anything,
)


@FUZZ
@given(doc=prompts_docs)
def test_prompts_from_json_fuzz_raises_only_one_line_errors(doc):
    try:
        prompts = Prompts.from_json(doc, source="p.json")
    except MatteBridgeError as e:
        assert one_line(e) and str(e).startswith("p.json: "), str(e)
        return
    for per in prompts.objects.values():
        for fp in per.values():
            values = [v for p in fp.points for v in (p.x, p.y)] + list(fp.box or ())
            assert all(np.isfinite(values)), fp  # NaN/Inf never reach the model


@FUZZ
@given(data=st.binary(max_size=200) | hostile_json | with_tokens(prompts_docs))
def test_prompts_load_fuzz_raises_only_one_line_errors(tmp_path_factory, data):
    path = tmp_path_factory.getbasetemp() / "fuzz-prompts.json"
    path.write_bytes(data)
    try:
        Prompts.load(str(path))
    except MatteBridgeError as e:
        assert one_line(e) and str(e).startswith(f"{path}: "), str(e)


# --- 9. damaged EXRs ----------------------------------------------------------------------------------------
def _header_end(data: bytes) -> int:
    """Offset just past an EXR single-part header (attributes: name\\0 type\\0 int32 size, value; then \\0)."""
    pos = 8
    while data[pos] != 0:
        type_end = data.index(b"\0", data.index(b"\0", pos) + 1)
        pos = type_end + 5 + struct.unpack_from("<i", data, type_end + 1)[0]
    return pos + 1


@pytest.fixture(scope="module")
def good_exrs(tmp_path_factory):
    """Small real EXRs: RGB and RGBA scanline, RGBA tiled (ZIP, half)."""
    folder = tmp_path_factory.mktemp("good")
    rng = np.random.default_rng(7)
    made = {}
    for name, chans, tiled in (("rgb", "RGB", False), ("rgba", "RGBA", False), ("tiled", "RGBA", True)):
        path = write_exr(
            folder / f"{name}.exr", {c: rng.random((40, 56)).astype(np.float32) for c in chans}, tiled=tiled
        )
        made[name] = open(path, "rb").read()
    return made


def _damaged(good):
    rgb, rgba, tiled = good["rgb"], good["rgba"], good["tiled"]
    chlist = rgb.index(b"channels\0chlist\0") + len(b"channels\0chlist\0")
    flipped_tile = bytearray(tiled)
    at = int(len(tiled) * 0.9)
    flipped_tile[at : at + 16] = bytes(b ^ 0xA5 for b in flipped_tile[at : at + 16])
    return {
        "zero_length.exr": b"",
        "text.exr": b"this is not an image\n",
        "png.exr": b"\x89PNG\r\n\x1a\n" + b"\0" * 40,
        "magic_only.exr": rgb[:4],
        "truncated_header.exr": rgb[: _header_end(rgb) // 2],
        "truncated_offsets.exr": rgb[: _header_end(rgb) + 4],
        "truncated_half.exr": rgb[: len(rgb) // 2],
        "truncated_tiled.exr": tiled[: len(tiled) * 3 // 4],
        "flipped_version.exr": rgb[:4] + b"\xff\xff\xff\xff" + rgb[8:],
        "flipped_header_bytes.exr": rgb[:40] + bytes(b ^ 0xFF for b in rgb[40:60]) + rgb[60:],
        "chlist_size.exr": rgb[:chlist] + struct.pack("<i", 37) + rgb[chlist + 4 :],  # wrong channel-list length
        "header_rgba_data_rgb.exr": rgba[: _header_end(rgba)]
        + rgb[_header_end(rgb) :],  # 4 channels declared, 3 stored
        "header_rgb_data_rgba.exr": rgb[: _header_end(rgb)] + rgba[_header_end(rgba) :],
        # OpenEXR quotes the type back: not UTF-8 (OIIO's geterror raised UnicodeDecodeError)
        "non_utf8_type.exr": rgb.replace(b"channels\0chlist\0", b"channels\0" + b"\xfe" * 6 + b"\0", 1),
        "non_utf8_channel.exr": rgba.replace(b"A\0", b"\xff\0", 1),
        "non_utf8_attribute.exr": rgb.replace(  # an extra string attribute whose value is not UTF-8
            b"compression\0", b"comments\0string\0\x04\0\0\0\xff\xfe\xfd\xfccompression\0", 1
        ),
        "damaged_tile.exr": bytes(flipped_tile),  # the decoder's error spans two lines
    }


def _check_reader(fn, path):
    """`fn(path)` either works or raises a one-line MatteBridgeError naming the file."""
    try:
        out = fn(path)
    except MatteBridgeError as e:
        assert one_line(e) and str(e).startswith(f"{path}: "), (fn.__name__, str(e))
        return "error"
    pixels = out.pixels if hasattr(out, "pixels") else out[0] if isinstance(out, tuple) else None
    if pixels is not None:
        assert np.isfinite(pixels).all()
    return "ok"


def test_damaged_exrs_give_one_line_errors(good_exrs, tmp_path):
    cases = _damaged(good_exrs)
    must_fail_plate = {
        "zero_length.exr",
        "text.exr",
        "png.exr",
        "magic_only.exr",
        "truncated_header.exr",
        "truncated_half.exr",
        "truncated_tiled.exr",
        "flipped_version.exr",
        "chlist_size.exr",
        "header_rgba_data_rgb.exr",
        "header_rgb_data_rgba.exr",
        "non_utf8_type.exr",
        "damaged_tile.exr",
    }
    outcome = {}
    for name, data in cases.items():
        path = str(tmp_path / name)
        with open(path, "wb") as f:
            f.write(data)
        outcome[name] = {fn.__name__: _check_reader(fn, path) for fn in (read_header, read_plate, read_mask)}
    assert {n for n, o in outcome.items() if o["read_plate"] == "error"} >= must_fail_plate, outcome
    assert outcome["non_utf8_attribute.exr"]["read_plate"] == "ok"  # an odd comment does not spoil a good frame
    assert outcome["non_utf8_channel.exr"]["read_plate"] == "ok"  # R, G, B are still there


def test_openexr_corpus_gives_one_line_errors():
    files = sorted(CORRUPT.glob("*.exr"))
    assert len(files) >= 8 and sum(f.stat().st_size for f in files) < 50_000
    for path in files:
        results = {fn.__name__: _check_reader(fn, str(path)) for fn in (read_header, read_plate, read_mask)}
        assert results["read_plate"] == "error", (path.name, results)


def test_fuzzed_exrs_give_one_line_errors(good_exrs, tmp_path):
    """OpenEXRFuzzTest's approach (src/test/OpenEXRFuzzTest/fuzzFile.cpp): overwrite bytes at random in a window of
    a real file, or cut it short; every reader either works or fails with one line naming the file."""
    rand = random.Random(1234)
    counts = {"ok": 0, "error": 0}
    for n in range(150):
        data = bytearray(good_exrs[rand.choice(["rgb", "tiled"])])
        kind = n % 3
        if kind == 0:  # truncate
            data = data[: rand.randrange(len(data))]
        else:  # a window of damage: in the header (kind 1) or anywhere (kind 2)
            start = rand.randrange(8, 400 if kind == 1 else len(data))
            for i in range(start, min(len(data), start + rand.randint(1, 200))):
                if rand.random() < 0.3:
                    data[i] = rand.randrange(256)
        path = str(tmp_path / f"fuzz{n}.exr")
        with open(path, "wb") as f:
            f.write(data)
        for fn in (read_header, read_plate, read_mask):
            counts[_check_reader(fn, path)] += 1
        os.unlink(path)
    assert counts["error"] > 100, counts


@pytest.mark.parametrize("damage", ["non_utf8_type.exr", "damaged_tile.exr", "zero_length.exr"])
def test_track_with_one_damaged_frame_exits_2_naming_it(checkpoint, good_exrs, tmp_path, damage):
    rng = np.random.default_rng(3)
    for f in (1, 2, 3):
        write_exr(
            tmp_path / f"plate.{f:04d}.exr", {c: rng.random((40, 56)).astype(np.float32) for c in "RGB"}, tiled=True
        )
    bad = tmp_path / "plate.0002.exr"
    if damage == "damaged_tile.exr":  # a good header, so frame 1 is tracked and written first
        data = bytearray(bad.read_bytes())
        at = int(len(data) * 0.9)
        data[at : at + 16] = bytes(b ^ 0xA5 for b in data[at : at + 16])
        bad.write_bytes(bytes(data))
    else:
        bad.write_bytes(_damaged(good_exrs)[damage])
    out = tmp_path / "out"
    code, _, err = run_cli(
        "track",
        tmp_path / "plate.####.exr",
        "--frames",
        "1-3",
        "--point",
        "20,20@1",
        "--direction",
        "forward",
        "--out",
        out / "m.####.exr",
        "--colorspace",
        "ACEScg",
        *model_args(checkpoint),
    )
    lines = err.strip().splitlines()  # the model line and progress lines, then the error
    assert code == 2 and "Traceback" not in err, err
    assert lines[-1].startswith(f"mattebridge: error: {bad}: "), err
    # the error is one line, and nothing else speaks of it (nor of a pending OpenImageIO error at exit)
    assert [ln for ln in lines if "rror" in ln or "EXR" in ln or "plate.0002" in ln] == lines[-1:], err
    written = sorted(os.listdir(out)) if out.exists() else []
    assert "m.0002.exr" not in written and "m.0003.exr" not in written, written
    assert not [n for n in written if n.startswith(".")], written  # no temporary (half-written) file
