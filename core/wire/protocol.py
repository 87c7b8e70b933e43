"""The wire between `mattebridge serve` and its clients (docs/protocol.md; docs/architecture.md §4).

A message is multipart: [TAG, header JSON, content JSON, buffer, ...]. The header carries msg_id,
msg_type, version, session and, for replies, parent_id. Buffers are raw C-contiguous arrays described in
the content ({"buffer": i, "dtype": ..., "shape": [...]}); nothing is ever pickled. Imports only the
standard library and numpy: clients inside host applications load it.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from mattebridge.core.errors import MatteBridgeError

TAG = b"mattebridge"
VERSION = 1
REQUESTS = (
    "hello",
    "status",
    "heartbeat",
    "goodbye",
    "open_clip",
    "put_frame",
    "prompt",
    "clear",
    "prompts",
    "propagate",
    "cancel",
    "close_clip",
)
# Requests a client may resend after a timeout: the server answers a repeated msg_id from its reply cache.
IDEMPOTENT = frozenset(
    ("hello", "status", "open_clip", "put_frame", "prompt", "clear", "prompts", "cancel", "close_clip")
)
DTYPES = ("uint8", "uint16", "float16", "float32")
MAX_JSON_BYTES = 1 << 20
# Deepest nesting of [ and { accepted in JSON from outside (wire messages, prompts files). json.loads recurses once
# per level, so a 2 KB document nested 1000 deep ends in RecursionError; real documents nest at most ~8 (a prompts
# document inside a reply's content).
MAX_JSON_DEPTH = 32

ERRORS = {
    "bad_message": "not a mattebridge message: wrong frame count, tag, or JSON",
    "unsupported_version": "the message's protocol version is not served here",
    "unknown_type": "no such message type",
    "bad_field": "a field is missing, of the wrong type, or out of range",
    "bad_buffer": "a buffer does not match its description (size, dtype, shape)",
    "too_large": "the message is larger than the server accepts",
    "unknown_clip": "no open clip with that id for this client",
    "forbidden_path": "the path is outside the server's allowed roots",
    "not_found": "a file or frame does not exist",
    "bad_file": "a file could not be read (corrupt, wrong format, missing layer)",
    "busy": "the server's queue is full: retry after `retry_after` seconds",
    "clip_busy": "a propagation is running on this clip",
    "internal": "an unexpected server error (a bug: the server log has details)",
}


class ProtocolError(MatteBridgeError):
    """A message that cannot be served; becomes an error reply with `code`."""

    def __init__(self, code: str, message: str, **extra):
        super().__init__(message)
        self.code, self.extra = code, extra


@dataclass
class Message:
    msg_type: str
    content: Dict[str, Any] = field(default_factory=dict)
    buffers: List[Any] = field(default_factory=list)
    msg_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    parent_id: Optional[str] = None
    session: str = ""
    version: int = VERSION


def encode(msg: Message) -> List[Any]:
    """Message -> frames, as strict JSON: a NaN or an infinity (which decode, like any strict JSON reader, refuses)
    raises ProtocolError `internal` naming the message, never goes out. Senders make such values null first."""
    header = {"msg_id": msg.msg_id, "msg_type": msg.msg_type, "version": msg.version, "session": msg.session}
    if msg.parent_id is not None:
        header["parent_id"] = msg.parent_id
    try:
        return [TAG, _dumps(header), _dumps(msg.content), *msg.buffers]
    except ValueError as e:
        raise ProtocolError("internal", f"{msg.msg_type}: cannot be sent as JSON ({e})") from None


def _dumps(doc) -> bytes:
    return json.dumps(doc, allow_nan=False).encode()


def decode(frames: Sequence[Any], max_bytes: int = 0) -> Message:
    """Frames (bytes or zmq.Frame) -> Message; raises ProtocolError naming what is wrong."""
    frames = [f.buffer if hasattr(f, "buffer") else f for f in frames]
    if len(frames) < 3 or bytes(frames[0]) != TAG:
        raise ProtocolError(
            "bad_message", f"expected [{TAG.decode()}, header, content, buffers...], got {len(frames)} frame(s)"
        )
    if max_bytes and sum(len(f) for f in frames) > max_bytes:
        raise ProtocolError("too_large", f"message of {sum(len(f) for f in frames)} bytes exceeds {max_bytes}")
    header = _json(frames[1], "header")
    content = _json(frames[2], "content")
    for key in ("msg_id", "msg_type"):
        if not isinstance(header.get(key), str) or not header[key]:
            raise ProtocolError("bad_message", f"header field {key!r} must be a non-empty string")
    version = header.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ProtocolError("bad_message", "header field 'version' must be an integer")
    parent = header.get("parent_id")
    return Message(
        header["msg_type"],
        content,
        list(frames[3:]),
        header["msg_id"],
        parent if isinstance(parent, str) else None,
        str(header.get("session", "")),
        version,
    )


def _json(frame, what: str) -> dict:
    if len(frame) > MAX_JSON_BYTES:
        raise ProtocolError("too_large", f"{what} JSON of {len(frame)} bytes exceeds {MAX_JSON_BYTES}")
    try:
        doc = load_json(bytes(frame))
    except ValueError as e:
        raise ProtocolError("bad_message", f"{what} is not JSON ({e})") from None
    if not isinstance(doc, dict):
        raise ProtocolError("bad_message", f"{what} must be a JSON object")
    return doc


_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)


def json_depth(data: bytes) -> int:
    """How deep [ and { nest in JSON text, outside strings: a linear pre-scan, so that json.loads (recursive) is
    never handed a document deep enough to exhaust the stack. On text that is not JSON it may over-count, never
    under-count what the parser would reach before failing (it counts opening brackets that are never closed)."""
    codes = np.frombuffer(_JSON_STRING.sub(b"", data), np.uint8)
    step = ((codes == 0x5B) | (codes == 0x7B)).astype(np.int32) - ((codes == 0x5D) | (codes == 0x7D))
    return max(int(np.cumsum(step).max()), 0) if len(step) else 0


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:24]} is out of range")
    return value


def _check_unicode(doc, depth: int = 0) -> None:
    """Strings (keys too) must be encodable: a JSON escape can spell a lone surrogate ("\\ud800")."""
    if isinstance(doc, str):
        try:
            doc.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"string {doc[:24]!r} holds an unpaired surrogate escape") from None
    elif isinstance(doc, dict):
        for key, value in doc.items():
            _check_unicode(key, depth + 1)
            _check_unicode(value, depth + 1)
    elif isinstance(doc, list):
        for value in doc:
            _check_unicode(value, depth + 1)


def load_json(data: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """JSON from outside (a wire frame, a prompts file), strictly: UTF-8, nested at most `max_depth` deep, no
    NaN/Infinity, no number that overflows a float (1e999), no unpaired surrogate. Raises ValueError with a
    one-line reason; never RecursionError."""
    if data.count(b"[") + data.count(b"{") > max_depth:  # else it cannot nest deeper: skip the scan
        depth = json_depth(data)
        if depth > max_depth:
            raise ValueError(f"nested {depth} levels deep (at most {max_depth} accepted)")
    try:
        doc = json.loads(data.decode("utf-8"), parse_constant=_no_constant, parse_float=_finite)
    except RecursionError:  # not reached after the pre-scan; kept so a stack limit can never escape as a crash
        raise ValueError(f"nested too deep (at most {max_depth} levels accepted)") from None
    if b"\\u" in data:  # only an escape can spell a surrogate: UTF-8 text cannot
        _check_unicode(doc)
    return doc


def error_content(code: str, message: str, **extra) -> dict:
    """An error reply's content, its message on one line whatever a client put in it (`one_line`)."""
    return {"code": code, "message": one_line(message), **extra}


def one_line(text: str) -> str:
    """`text` with its control characters written as escapes: a newline in a client's path stays visible and
    cannot start a new line (of an error reply, or of the server's log)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


# --- arrays -------------------------------------------------------------------------------------------
def pack_array(array: np.ndarray, buffers: List[Any]) -> dict:
    """Append `array` to `buffers`; returns its description for the content."""
    array = np.ascontiguousarray(array)
    if array.dtype.name not in DTYPES:
        raise ValueError(f"dtype {array.dtype} not sendable (one of {', '.join(DTYPES)})")
    buffers.append(memoryview(array).cast("B"))
    return {"buffer": len(buffers) - 1, "dtype": array.dtype.name, "shape": list(array.shape)}


def unpack_array(
    desc: Any,
    buffers: Sequence[Any],
    name: str,
    ndim: Tuple[int, ...] = (2, 3),
    channels: Tuple[int, ...] = (1, 3, 4),
    max_side: int = 65536,
) -> np.ndarray:
    """A described buffer -> read-only array, checked against its description."""
    if not isinstance(desc, dict):
        raise ProtocolError("bad_field", f"{name}: expected a buffer description object")
    index, dtype, shape = desc.get("buffer"), desc.get("dtype"), desc.get("shape")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(buffers):
        raise ProtocolError("bad_buffer", f"{name}: buffer index {index!r} (message has {len(buffers)} buffer(s))")
    expected = check_layout(dtype, shape, name, ndim, channels, max_side)
    buf = buffers[index]
    if len(buf) != expected:
        raise ProtocolError("bad_buffer", f"{name}: {len(buf)} bytes for {dtype} {shape} (expected {expected})")
    return np.frombuffer(buf, dtype=dtype).reshape(shape)


def check_layout(
    dtype: Any,
    shape: Any,
    name: str,
    ndim: Tuple[int, ...] = (2, 3),
    channels: Tuple[int, ...] = (1, 3, 4),
    max_side: int = 65536,
) -> int:
    """A described array's dtype and shape, checked; returns its size in bytes."""
    if dtype not in DTYPES:
        raise ProtocolError("bad_buffer", f"{name}: dtype {dtype!r} (expected one of {', '.join(DTYPES)})")
    if (
        not isinstance(shape, list)
        or len(shape) not in ndim
        or not all(isinstance(s, int) and not isinstance(s, bool) and 0 < s <= max_side for s in shape)
    ):
        raise ProtocolError(
            "bad_buffer", f"{name}: shape {shape!r} (expected {' or '.join(map(str, ndim))} positive sizes)"
        )
    if len(shape) == 3 and shape[2] not in channels:
        raise ProtocolError("bad_buffer", f"{name}: {shape[2]} channels (expected {' or '.join(map(str, channels))})")
    return int(np.prod(shape)) * np.dtype(dtype).itemsize


def check_window(value: Any, name: str) -> Tuple[int, int, int, int]:
    if (
        not isinstance(value, list)
        or len(value) != 4
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        or value[2] <= 0
        or value[3] <= 0
        or max(map(abs, value)) > 1 << 20
    ):
        raise ProtocolError("bad_field", f"{name}: expected [x, y, width, height] integers with positive size")
    return tuple(value)


def field_of(content: dict, key: str, types, default: Any = ..., name: str = "") -> Any:
    """content[key], type-checked; a missing key without a default is an error naming it."""
    if key not in content or content[key] is None:
        if default is ...:
            raise ProtocolError("bad_field", f"{name or key}: required")
        return default
    value = content[key]
    types = types if isinstance(types, tuple) else (types,)
    if isinstance(value, bool) and bool not in types:
        raise ProtocolError(
            "bad_field", f"{name or key}: expected {'/'.join(t.__name__ for t in types)}, got a boolean"
        )
    if not isinstance(value, types):
        raise ProtocolError(
            "bad_field", f"{name or key}: expected {'/'.join(t.__name__ for t in types)}, got {type(value).__name__}"
        )
    return value
