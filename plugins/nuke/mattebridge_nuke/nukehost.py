"""The Nuke side of a job: knobs -> JobRequest, the input's pixels, Nuke's threads and progress bar.

Everything here runs on Nuke's main thread except NukeHost's methods, which are what the job thread
uses to reach it. Knob names and the node's layout live in node.py.
"""

import functools
import os
import re
from typing import Dict, List, Optional, Tuple

import nuke

from . import sources
from .jobs import Host, JobError, JobRequest, Source
from .prompts import ObjectKnobs, PointKnob, canonical

DEFAULT_ADDRESS = "tcp://127.0.0.1:5557"  # mattebridge.core.wire.vocabulary.DEFAULT_ADDRESS (a test compares them)
# knobs that say nothing about pixels: where a node sits, how it looks, its name
UI_KNOBS = {
    "xpos",
    "ypos",
    "selected",
    "name",
    "label",
    "note_font",
    "note_font_size",
    "note_font_color",
    "tile_color",
    "gl_color",
    "hide_input",
    "postage_stamp",
    "postage_stamp_frame",
    "dope_sheet",
    "bookmark",
    "help",
    "onCreate",
    "onDestroy",
    "knobChanged",
    "updateUI",
    "autolabel",
    "panel",
    "icon",
    "indicators",
    "cached",
    "lifetimeStart",
    "lifetimeEnd",
    "useLifetime",
    "lock_connections",
}
SLOT_KNOB = re.compile(r"o(\d+)_name$")


class NukeHost(Host):
    """Background-job threads reach Nuke through these (Nuke's documented threading calls)."""

    def call(self, fn, *args):
        return nuke.executeInMainThreadWithResult(fn, args)

    def post(self, fn, *args) -> None:
        nuke.executeInMainThread(fn, args)

    def progress(self, title: str):
        return nuke.ProgressTask(title)


# --- knobs -> prompts -------------------------------------------------------------------------------
def slots(node) -> List[int]:
    return sorted(int(m.group(1)) for m in (SLOT_KNOB.match(n) for n in node.knobs()) if m)


def point_knobs(node, slot: int) -> List[Tuple[str, bool]]:
    """(knob name, positive) of an object's point knobs, foreground first, in their order."""
    found = []
    for name in node.knobs():
        m = re.match(r"o%d_(fg|bg)(\d+)$" % slot, name)
        if m:
            found.append((m.group(1) != "fg", int(m.group(2)), name))
    return [(name, not bg) for bg, _, name in sorted(found)]


def keyed_values(knob, size: int) -> Dict[float, tuple]:
    """key time -> the knob's values there (a knob without animation has no keys: it prompts nothing)."""
    if not knob.isAnimated():
        return {}
    return {float(t): tuple(float(knob.getValueAt(t, i)) for i in range(size)) for t in knob.getKeyList()}


def read_objects(node) -> List[ObjectKnobs]:
    objects = []
    for slot in slots(node):
        name = str(node["o%d_name" % slot].value())
        points = [
            PointKnob(str(node[k].label() or k), positive, keyed_values(node[k], 2))
            for k, positive in point_knobs(node, slot)
        ]
        box = keyed_values(node["o%d_box" % slot], 4)
        objects.append(ObjectKnobs(name, bool(node["o%d_on" % slot].value()), points, box))
    return objects


def node_prompts(node) -> Dict[str, Dict[int, dict]]:
    return canonical(read_objects(node))


def settings(node) -> Dict[str, object]:
    return {"edge": str(node["edge"].value())}


def frame_range(node) -> Tuple[int, int]:
    first, last = int(node["first"].value()), int(node["last"].value())
    if last < first:
        raise JobError(f"frame range {first}-{last}: the last frame comes before the first")
    return first, last


def input_view(node) -> Tuple[Tuple[int, int, float], Tuple[int, int, int, int]]:
    """The node's input as Nuke shows it at full size: ((width, height, pixel aspect) of its format,
    its bbox (x, y, r, t) at the current frame). Read with proxy mode off: in proxy mode Nuke reports
    what it renders, scaled."""
    source = node.input(0)
    if source is None:
        raise JobError("connect the plate to the node's input first")
    root = nuke.root()
    proxy = bool(root["proxy"].value())
    try:
        if proxy:
            root["proxy"].setValue(False)
        fmt, box = source.format(), source.bbox()
        return (
            (int(fmt.width()), int(fmt.height()), float(fmt.pixelAspect())),
            (int(box.x()), int(box.y()), int(box.x() + box.w()), int(box.y() + box.h())),
        )
    finally:
        if proxy:
            root["proxy"].setValue(True)


def image_format(node) -> Tuple[int, int, float]:
    """The full-size format of the node's input (Nuke's format is the display window)."""
    return input_view(node)[0]


def cache_root(node) -> str:
    """The cache folder, evaluated ([file dirname [value root.name]] needs a saved script)."""
    path = str(node["cache"].evaluate()).strip()
    if not path or not os.path.isabs(path):
        raise JobError(
            "save the script first: the mattes are kept next to it (or set the node's cache folder to an absolute path)"
        )
    return os.path.normpath(path)


# --- the input's pixels --------------------------------------------------------------------------
def upstream_read(node):
    """The Read feeding the node (through Dots), or None."""
    source = node.input(0)
    while source is not None and source.Class() == "Dot":
        source = source.input(0)
    return source if source is not None and source.Class() == "Read" else None


def read_info(read) -> Optional[dict]:
    if read is None:
        return None
    path = str(read["file"].value())
    if "[" in path:  # a TCL expression: the server cannot expand it
        path = ""
    return {
        "file": path,
        "first": int(read["first"].value()),
        "last": int(read["last"].value()),
        "frame": str(read["frame"].value()),
        "disable": bool(read["disable"].value()),
        "colorspace": str(read["colorspace"].value()),
        "raw": bool(read["raw"].value()),
    }


def upstream_recipe(node) -> Tuple[str, List[str]]:
    """Every node upstream of `node` (class and pixel-relevant knob values) and the file patterns of
    the Reads among them: what the rendered input depends on."""
    parts, files, seen, stack = [], [], set(), [node.input(0)]
    while stack:
        n = stack.pop()
        if n is None or id(n) in seen:
            continue
        seen.add(id(n))
        knobs = n.knobs()
        parts.append([n.Class(), sorted((k, knobs[k].toScript()) for k in knobs if k not in UI_KNOBS)])
        if n.Class() == "Read":
            files.append(str(n["file"].value()))
        stack.extend(n.input(i) for i in range(n.inputs()))
    root = nuke.root()
    for k in ("format", "proxy_type", "colorManagement", "OCIO_config", "workingSpaceLUT", "customOCIOConfigPath"):
        if k in root.knobs():
            parts.append([k, root[k].toScript()])
    return sources.digest_text(parts), files


def colour_settings() -> Dict[str, str]:
    root = nuke.root()
    return {
        k: str(root[k].value())
        for k in ("colorManagement", "OCIO_config", "customOCIOConfigPath", "workingSpaceLUT")
        if k in root.knobs()
    }


def input_source(node, first: int, last: int) -> Source:
    frames = range(first, last + 1)
    colour = colour_settings()
    setup = sources.ocio_setup(colour)
    ocio = str(node["ocio"].value()).strip() or setup["ocio"]
    override = str(node["colorspace"].value()).strip()
    recipe, files = upstream_recipe(node)
    working = override or sources.server_colorspace(colour.get("workingSpaceLUT", ""), setup["nuke_spaces"])
    rendered = Source(
        "the node's input (rendered)",
        sources.rendered_stamps(recipe, files, frames),
        None,
        working,
        ocio,
        functools.partial(render_input, node),
    )
    read = upstream_read(node)
    info = read_info(read)
    if sources.direct_read_problem(info, first, last) is not None:
        return rendered
    colorspace = override or sources.server_colorspace(info["colorspace"], setup["nuke_spaces"])
    if colorspace is None:  # the Read says only "default": Nuke picks the space by its rules, unknown here
        return rendered
    return Source(
        f"{read.name()}'s files",
        sources.direct_stamps(info["file"], frames, colorspace),
        info["file"],
        colorspace,
        ocio,
        None,
        rendered,
    )


def render_input(node, pattern: str, first: int, last: int) -> None:
    """Main thread: the node's input -> float EXRs at full size (proxy off while it renders)."""
    root = nuke.root()
    proxy = bool(root["proxy"].value())
    write = None
    try:
        if proxy:
            root["proxy"].setValue(False)
        with node:
            write = nuke.nodes.Write(file=pattern, channels="rgb")
            # a Write has datatype/compression only once its file type is exr: file_type first
            write["file_type"].setValue("exr")
            for knob, value in (("datatype", "32 bit float"), ("compression", "Zip (1 scanline)")):
                if knob in write.knobs():
                    write[knob].setValue(value)
            write.setInput(0, node.node("plate"))
        try:
            nuke.execute(write, first, last)
        except RuntimeError as e:
            raise JobError(f"rendering the node's input, frames {first}-{last}: {e}") from None
    finally:
        if write is not None:
            nuke.delete(write)
        if proxy:
            root["proxy"].setValue(True)


# --- one request --------------------------------------------------------------------------------
def gather(node, preview_frame: Optional[int] = None) -> JobRequest:
    """Everything a job needs, read from the node now (main thread). For a Preview, also the input's
    bbox on that frame (the current frame), which the job checks against the frames the server reads."""
    first, last = frame_range(node)
    fmt, bbox = input_view(node)
    return JobRequest(
        node=node.name(),
        address=str(node["server"].value()).strip() or DEFAULT_ADDRESS,
        settings=settings(node),
        image_format=fmt,
        prompts=node_prompts(node),
        first=first,
        last=last,
        cache_root=cache_root(node),
        source=input_source(node, first, last),
        expected_model=str(node["model"].value()).strip(),
        input_bbox=bbox if preview_frame is not None else None,
    )


def viewer_centre(node) -> Tuple[float, float]:
    """Where a new handle appears: the middle of the input's format (full-size pixels, Nuke space)."""
    try:
        w, h, _ = image_format(node)
    except JobError:
        fmt = nuke.root().format()
        w, h = fmt.width(), fmt.height()
    return w / 2.0, h / 2.0
