"""The SHOTS file of `mattebridge farm`: a show's shots as CSV or a JSON list, every row checked up front.

Every value is hostile input: paths resolve against the SHOTS file's folder (never the shell's), every input
file must exist when the bundle is written, and every failure is one line naming the row and the field. CSV
rows are counted as a spreadsheet shows them (the header is row 1); JSON rows from 1 in list order.
"""

from __future__ import annotations

import csv
import io
import os
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from mattebridge.core.errors import MatteBridgeError
from mattebridge.core.wire.prompts import Prompts
from mattebridge.core.wire.sequence import FrameRange, frame_path, has_frame_token
from mattebridge.core.wire.vocabulary import EDGE_MODES, LAYOUTS

REQUIRED = ("shot", "plate", "frames", "prompts", "out")
OPTIONAL = ("layer", "colorspace", "view", "edge", "layout")
FIELDS = REQUIRED + OPTIONAL
# Shot names become report file names and OpenJD task parameter values.
SHOT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
MAX_BYTES = 16 << 20  # far beyond any show; bounds what a wrong path makes us read
MAX_VALUE = 1024  # an OpenJD task parameter value's limit, after paths are resolved


@dataclass
class Shot:
    row: int
    name: str
    plate: str  # absolute pattern
    frames: FrameRange
    prompts: str  # absolute path of the prompts JSON
    out: str  # absolute pattern
    objects: List[str]
    options: Dict[str, str] = field(default_factory=dict)  # layer, colorspace, view, edge, layout when given
    shots_file: str = ""  # the SHOTS file the row came from, for errors found after loading

    @property
    def layout(self) -> str:
        return self.options.get("layout", "files")


class ShotsError(MatteBridgeError):
    pass


def load_shots(path: str) -> List[Shot]:
    """Every shot of a SHOTS file (.csv, or .json: a list of objects), checked; the first problem raises."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise ShotsError(f"{path}: cannot read SHOTS file ({e.strerror or e})") from None
    if len(data) > MAX_BYTES:
        raise ShotsError(f"{path}: not a SHOTS file (larger than {MAX_BYTES >> 20} MiB)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ShotsError(f"{path}: not UTF-8 text (byte {e.start})") from None
    rows = _json_rows(path, text) if path.lower().endswith(".json") else _csv_rows(path, text)
    if not rows:
        raise ShotsError(f"{path}: no shots")
    base = os.path.dirname(os.path.abspath(path))
    shots: List[Shot] = []
    seen: Dict[str, Shot] = {}
    outs: Dict[str, Shot] = {}
    for row, values in rows:
        name = values.get("shot", "")
        key = name.casefold()  # report files collide on case-insensitive file systems
        if key in seen:
            raise ShotsError(f"{path}: row {row} ({name}), field shot: duplicate of row {seen[key].row}")
        shot = _shot(path, base, row, values)
        if shot.out in outs:
            raise ShotsError(
                f"{path}: row {row} ({shot.name}), field out: {shot.out} is also written by row {outs[shot.out].row}"
            )
        seen[key] = outs[shot.out] = shot
        shots.append(shot)
    return shots


def _csv_rows(path: str, text: str):
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        table = [r for r in reader]
    except csv.Error as e:
        raise ShotsError(f"{path}: row {reader.line_num}: not readable CSV ({e})") from None
    if not table:
        raise ShotsError(f"{path}: no shots")
    header = [h.strip() for h in table[0]]
    for h in header:
        if h not in FIELDS:
            raise ShotsError(f"{path}: row 1, field {h!r}: unknown field; fields: {', '.join(FIELDS)}")
    for h in header:
        if header.count(h) > 1:
            raise ShotsError(f"{path}: row 1, field {h}: appears twice")
    rows = []
    for n, cells in enumerate(table[1:], start=2):
        if not any(c.strip() for c in cells):
            continue  # blank lines between blocks of shots
        if len(cells) > len(header):
            raise ShotsError(f"{path}: row {n}: {len(cells)} cells but {len(header)} columns")
        rows.append((n, {h: c.strip() for h, c in zip(header, cells) if c.strip()}))
    return rows


def _json_rows(path: str, text: str):
    from mattebridge.core.wire.protocol import load_json

    try:
        doc = load_json(text.encode("utf-8"))
    except ValueError as e:
        raise ShotsError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(doc, list):
        raise ShotsError(f"{path}: expected a JSON list of shots")
    rows = []
    for n, entry in enumerate(doc, start=1):
        if not isinstance(entry, dict):
            raise ShotsError(f"{path}: row {n}: expected an object with fields {', '.join(REQUIRED)}")
        for k, v in entry.items():
            if k not in FIELDS:
                raise ShotsError(f"{path}: row {n}, field {k!r}: unknown field; fields: {', '.join(FIELDS)}")
            if not isinstance(v, str) and not (k == "frames" and isinstance(v, int) and not isinstance(v, bool)):
                raise ShotsError(f"{path}: row {n}, field {k}: expected a string")
        rows.append((n, {k: str(v).strip() for k, v in entry.items() if str(v).strip()}))
    return rows


def _shot(path: str, base: str, row: int, values: Dict[str, str]) -> Shot:
    name = values.get("shot", "")
    where = f"{path}: row {row}" + (f" ({name})" if name else "")

    def bad(fieldname: str, msg: str) -> ShotsError:
        return ShotsError(f"{where}, field {fieldname}: {msg}")

    for f in REQUIRED:
        if f not in values:
            raise bad(f, "missing (required: " + ", ".join(REQUIRED) + ")")
    for f, v in values.items():
        if any(unicodedata.category(c) == "Cc" for c in v):
            raise bad(f, "control characters are not allowed")
        if "{{" in v or "}}" in v:
            raise bad(f, "'{{' and '}}' are not allowed (OpenJD reads them as expressions)")
    if not SHOT_NAME.fullmatch(name):
        raise bad("shot", f"{name!r}: 1-64 letters, digits, '_', '-' or '.', not starting with '.' or '-'")
    try:
        frames = FrameRange.parse(values["frames"])
    except MatteBridgeError as e:
        raise bad("frames", str(e).split(": ", 1)[-1]) from None

    def resolved(f: str) -> str:
        p = os.path.normpath(os.path.join(base, os.path.expanduser(values[f])))
        if len(p) > MAX_VALUE:
            raise bad(f, f"path longer than {MAX_VALUE} characters")
        return p

    plate = resolved("plate")
    if len(frames) > 1 and not has_frame_token(plate):
        raise bad("plate", f"{values['plate']}: needs a frame token (####, %04d or @) for frames {frames}")
    for frame in frames:
        if not os.path.isfile(frame_path(plate, frame)):
            raise bad("plate", f"{frame_path(plate, frame)}: no such file (frame {frame})")

    prompts_path = resolved("prompts")
    if not os.path.isfile(prompts_path):
        raise bad("prompts", f"{prompts_path}: no such file")
    try:
        prompts = Prompts.load(prompts_path)
    except MatteBridgeError as e:
        raise bad("prompts", str(e)) from None
    if prompts.is_empty():
        raise bad("prompts", f"{prompts_path}: no objects")
    for obj, per in prompts.objects.items():
        for frame, fp in per.items():
            if frame not in frames:
                raise bad("prompts", f"{prompts_path}: object {obj!r}, frame {frame}: outside the range {frames}")
            if fp.mask is not None:
                mask = os.path.join(os.path.dirname(prompts_path), fp.mask)
                if not os.path.isfile(mask):
                    raise bad("prompts", f"{prompts_path}: object {obj!r}, frame {frame}: mask {mask}: no such file")

    options: Dict[str, str] = {f: values[f] for f in OPTIONAL if f in values}
    if options.get("edge", "soft") not in EDGE_MODES:
        raise bad("edge", f"{options['edge']!r}: expected one of {', '.join(EDGE_MODES)}")
    if options.get("layout", "files") not in LAYOUTS:
        raise bad("layout", f"{options['layout']!r}: expected one of {', '.join(LAYOUTS)}")
    out = resolved("out")
    if len(frames) > 1 and not has_frame_token(out):
        raise bad("out", f"{values['out']}: needs a frame token (####, %04d or @) for frames {frames}")
    if options.get("layout", "files") == "files" and len(prompts.objects) > 1 and "{object}" not in out:
        raise bad("out", f"{values['out']}: several objects ({', '.join(prompts.objects)}) need {{object}}")
    return Shot(row, name, plate, frames, prompts_path, out, list(prompts.objects), options, path)


def shot_objects(shot: Shot, chunk_objects: bool) -> List[Optional[str]]:
    """The objects each task of `shot` tracks: None = all of them in one task. Layouts that keep every object in
    one file per frame (layers, cryptomatte) are never split: two tasks would write the same files."""
    if chunk_objects and shot.layout == "files" and len(shot.objects) > 1:
        return list(shot.objects)
    return [None]
