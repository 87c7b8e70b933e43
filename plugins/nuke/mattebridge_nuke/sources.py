"""Where the server gets the node's input pixels, and what identifies them. Pure Python: no `nuke` import.

Two ways (docs/architecture.md §6, Nuke): the file of the Read feeding the node, when nothing between that Read and the
node changes the pixels; otherwise the node's own input, rendered by an internal Write to temporary
float EXRs in the working space. The Nuke side (nukehost.py) gathers knob values into the dicts these
functions take.
"""

import hashlib
import json
import os
import re
from typing import Dict, Iterable, Optional

DIRECT_EXTENSIONS = {"exr", "dpx", "tif", "tiff", "png", "jpg", "jpeg"}  # what the server's reader opens

# Nuke's own (non-OCIO) colour spaces -> their names in OCIO's studio config (the server's default config)
NUKE_DEFAULT_SPACES = {
    "linear": "Linear Rec.709 (sRGB)",
    "sRGB": "sRGB - Texture",
    "rec709": "Rec.1886 Rec.709 - Display",
    "Gamma2.2": "Gamma 2.2 Rec.709 - Texture",
}

_PRINTF = re.compile(r"%0?(\d*)d")
_HASHES = re.compile(r"#+")


def frame_file(pattern: str, frame: int) -> str:
    """A Nuke file knob's pattern (`%04d`, `%d` or `####`) at one frame, as Nuke expands it (printf)."""
    m = _PRINTF.search(pattern)
    if m:
        width = int(m.group(1) or 0)
        return pattern[: m.start()] + ("%0*d" % (width, frame)) + pattern[m.end() :]
    m = _HASHES.search(pattern)
    if m:
        return pattern[: m.start()] + ("%0*d" % (len(m.group(0)), frame)) + pattern[m.end() :]
    return pattern


def to_hashes(pattern: str) -> str:
    """`%04d` -> `####` (the server takes either; hashes read better in messages)."""
    m = _PRINTF.search(pattern)
    if not m:
        return pattern
    return pattern[: m.start()] + "#" * max(1, int(m.group(1) or 1)) + pattern[m.end() :]


def file_stamp(path: str) -> str:
    """Identity of a file's content as cheaply as possible: size and modification time."""
    try:
        st = os.stat(path)
    except OSError:
        return "missing"
    return "%d:%d" % (st.st_size, st.st_mtime_ns)


def strip_default(colorspace: str) -> str:
    """Nuke shows the default choice as `default (ACEScg)`: the space is the part in brackets. A bare
    `default` names no space (Nuke picks it by file type or OCIO file rules): ""."""
    m = re.fullmatch(r"\s*default\s*(?:\((.*)\))?\s*", colorspace or "")
    if m:
        return (m.group(1) or "").strip()
    return (colorspace or "").strip()


def ocio_setup(root: Dict[str, str], environ: Optional[Dict[str, str]] = None) -> Dict[str, Optional[str]]:
    """The script's colour settings -> what the server needs:
    {"ocio": path or ocio:// URI or None, "nuke_spaces": bool}.

    root: `colorManagement` ("Nuke" or "OCIO"), `OCIO_config` (a built-in name such as
    "fn-nuke_cg-config-v1.0.0_aces-v1.3_ocio-v2.1", "aces_1.2", "nuke-default" or "custom") and
    `customOCIOConfigPath`. $OCIO wins, as it does in Nuke.
    """
    env = os.environ if environ is None else environ
    if env.get("OCIO"):
        return {"ocio": env["OCIO"], "nuke_spaces": False}
    if root.get("colorManagement", "OCIO") == "Nuke" or root.get("OCIO_config") in ("nuke-default", "", None):
        return {"ocio": None, "nuke_spaces": True}  # Nuke's own spaces, named in the server's default config
    config = root["OCIO_config"]
    if config == "custom":
        return {"ocio": root.get("customOCIOConfigPath") or None, "nuke_spaces": False}
    if config.startswith("fn-nuke_"):  # Nuke's names for OCIO's built-in configs
        return {"ocio": "ocio://" + config[len("fn-nuke_") :], "nuke_spaces": False}
    return {"ocio": None, "nuke_spaces": False}  # a config shipped inside Nuke: the server cannot see it


def server_colorspace(name: str, nuke_spaces: bool) -> Optional[str]:
    name = strip_default(name)
    if not name:
        return None
    if nuke_spaces:
        return NUKE_DEFAULT_SPACES.get(name, name)
    return name


def direct_read_problem(read: Optional[dict], first: int, last: int) -> Optional[str]:
    """Why the Read's files cannot stand for the node's input (None: they can).

    read: None when the node's input is not a Read (through Dots), else {"file", "first", "last",
    "frame" (the Read's frame expression/offset text), "frame_mode", "disable", "raw"}.
    """
    if read is None:
        return "the input is not a Read"
    if read.get("disable"):
        return "the Read is disabled"
    path = read.get("file") or ""
    if not path:
        return "the Read has no file"
    ext = path.rsplit(".", 1)[-1].lower() if "." in os.path.basename(path) else ""
    if ext not in DIRECT_EXTENSIONS:
        return f"the server does not read .{ext} files"
    if str(read.get("frame") or "").strip():
        return "the Read changes frame numbers"
    if not (int(read["first"]) <= first and last <= int(read["last"])):
        return f"the Read's range {read['first']}-{read['last']} does not cover {first}-{last}"
    if (first != last or read["first"] != read["last"]) and frame_file(path, 1) == frame_file(path, 2):
        return "the Read's file has no frame number"
    missing = [f for f in (first, last) if not os.path.exists(frame_file(path, f))]
    if missing:
        return f"{frame_file(path, missing[0])} is missing"
    return None


def direct_stamps(pattern: str, frames: Iterable[int], colorspace: Optional[str]) -> Dict[int, str]:
    return {
        f: digest_text("read", os.path.abspath(frame_file(pattern, f)), file_stamp(frame_file(pattern, f)), colorspace)
        for f in frames
    }


def rendered_stamps(recipe: str, upstream_files: Iterable[str], frames: Iterable[int]) -> Dict[int, str]:
    """recipe: every upstream node's class and knob values (nukehost.upstream_recipe); upstream_files: the
    file patterns of the Reads among them, whose files at each frame stamp that frame."""
    files = sorted(set(upstream_files))
    return {f: digest_text("render", recipe, [file_stamp(frame_file(p, f)) for p in files]) for f in frames}


def digest_text(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:24]
