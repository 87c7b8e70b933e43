"""The MatteBridge node: a Group with knobs, per-object handles, and an internal Read + Copy per object.

Inside the Group:  plate (Input) -> Copy <- Read of an object's cached mattes (-> ... per object) -> Output.
With output "channel", the objects' mattes are merged (max) and copied into one channel (rgba.alpha by
default); with "layer per object", each object's matte goes to its own layer (<prefix><object>.alpha).
The Reads read the cache folder with plain file paths (TCL only for the folder): a farm render needs
neither the plugin nor a server.
"""

import re
from typing import List, Optional

import nuke

from .nukehost import DEFAULT_ADDRESS

PLUGIN_VERSION = "1"
DEFAULT_CACHE = "[file dirname [value root.name]]/mattebridge/[value this.name]"
EDGE_MODES = ["soft", "raw", "hard", "matte"]  # mattebridge.core.wire.vocabulary.EDGE_MODES (a test compares them)
OUTPUTS = ["channel", "layer per object"]
MISSING = ["black", "error"]
POINTS_PER_KIND = 6  # point knobs per object and kind (shown one by one with "+ point" / "- point")

ON_CREATE = """\
try:
    import mattebridge_nuke.node as _mattebridge
except ImportError:
    _mattebridge = None
if _mattebridge is not None:
    _mattebridge.sync_visibility(nuke.thisNode())
"""

KNOB_CHANGED = """\
try:
    import mattebridge_nuke.callbacks as _mattebridge
except ImportError:
    _mattebridge = None
if _mattebridge is not None:
    _mattebridge.knob_changed(nuke.thisNode(), nuke.thisKnob())
"""


def _cmd(call: str) -> str:
    """A button's script: the node is nuke.thisNode() when Nuke runs it."""
    return "import mattebridge_nuke.callbacks as _mattebridge\n_mattebridge.%s" % call


def is_mattebridge(node) -> bool:
    return node is not None and "mb_version" in node.knobs()


# --- creation -------------------------------------------------------------------------------------
def create_node():
    """Nodes > MatteBridge > MatteBridge: the node below the selected one, with one object."""
    node = nuke.createNode("Group", inpanel=False)
    node.setName("MatteBridge")
    build(node)
    add_object(node)
    node.showControlPanel()
    return node


def build(node) -> None:
    """Knobs and internal graph of a fresh Group."""
    with node:
        plate = nuke.nodes.Input(name="plate")
        output = nuke.nodes.Output(name="Output1")
        output.setInput(0, plate)
    node.addKnob(nuke.Tab_Knob("mattebridge", "MatteBridge"))
    version = nuke.String_Knob("mb_version", "version")
    version.setValue(PLUGIN_VERSION)
    version.setFlag(nuke.INVISIBLE)
    node.addKnob(version)

    server = nuke.String_Knob("server", "server")
    server.setValue(DEFAULT_ADDRESS)
    server.setTooltip("address of `mattebridge serve` (it must see the same files as this machine)")
    node.addKnob(server)
    model = nuke.String_Knob("model", "model")
    model.setTooltip("the model the server must run (e.g. sam2.1_hiera_large); empty: whatever it runs")
    node.addKnob(model)

    first, last = _input_range(node)
    k = nuke.Int_Knob("first", "frame range")
    k.setValue(first)
    node.addKnob(k)
    k = nuke.Int_Knob("last", "")
    k.setValue(last)
    k.clearFlag(nuke.STARTLINE)
    node.addKnob(k)
    k = nuke.Enumeration_Knob("edge", "edges", EDGE_MODES)
    k.setTooltip("soft: refined against the plate; raw: the model's own; hard: binary")
    node.addKnob(k)

    k = nuke.Enumeration_Knob("output", "output", OUTPUTS)
    node.addKnob(k)
    k = nuke.String_Knob("channel", "channel")
    k.setValue("rgba.alpha")
    k.setTooltip("the channel the mattes go to (every object merged)")
    node.addKnob(k)
    k = nuke.String_Knob("layer_prefix", "layer prefix")
    k.setValue("mb_")
    k.setTooltip("each object's matte goes to the layer <prefix><object>, channel alpha")
    k.setVisible(False)
    node.addKnob(k)

    k = nuke.File_Knob("cache", "cache folder")
    k.setValue(DEFAULT_CACHE)
    k.setTooltip("where the mattes are kept (default: next to the script); the farm reads them from there")
    node.addKnob(k)
    k = nuke.Enumeration_Knob("missing", "untracked frames", MISSING)
    k.setTooltip("what the output shows on frames without a matte: black, or an error (safer on the farm)")
    node.addKnob(k)
    k = nuke.String_Knob("colorspace", "input colour space")
    k.setTooltip("the colour space of the frames the server reads; empty: the Read's, or the working space")
    node.addKnob(k)
    k = nuke.String_Knob("ocio", "OCIO config")
    k.setTooltip("path or ocio:// URI of the config the server uses; empty: $OCIO or the script's")
    node.addKnob(k)

    for name, label, call in (
        ("preview", "Preview", "preview(nuke.thisNode())"),
        ("track_backward", "Track \u25c0", "track(nuke.thisNode(), 'backward')"),
        ("track_forward", "Track \u25b6", "track(nuke.thisNode(), 'forward')"),
        ("track_both", "Track \u25c0\u25b6", "track(nuke.thisNode(), 'both')"),
        ("cancel", "Cancel", "cancel(nuke.thisNode())"),
    ):
        k = nuke.PyScript_Knob(name, label, _cmd(call))
        if name != "preview":
            k.clearFlag(nuke.STARTLINE)
        node.addKnob(k)
    k = nuke.PyScript_Knob("add_object", "Add object", _cmd("add_object(nuke.thisNode())"))
    node.addKnob(k)
    k = nuke.PyScript_Knob("purge", "Delete stale mattes", _cmd("purge(nuke.thisNode())"))
    k.clearFlag(nuke.STARTLINE)
    node.addKnob(k)
    node.addKnob(nuke.Text_Knob("status", "status", "ready"))
    node["knobChanged"].setValue(KNOB_CHANGED)
    node["onCreate"].setValue(ON_CREATE)


def _input_range(node):
    source = node.input(0)
    if source is not None:
        return int(source.firstFrame()), int(source.lastFrame())
    root = nuke.root()
    return int(root["first_frame"].value()), int(root["last_frame"].value())


# --- objects --------------------------------------------------------------------------------------
def object_slots(node) -> List[int]:
    return sorted(int(m.group(1)) for m in (re.match(r"o(\d+)_name$", n) for n in node.knobs()) if m)


def object_names(node) -> List[str]:
    return [str(node["o%d_name" % s].value()) for s in object_slots(node)]


def slot_knob_names(node, slot: int) -> List[str]:
    return [n for n in node.knobs() if re.match(r"o%d_" % slot, n)]


def add_object(node, name: Optional[str] = None) -> int:
    slots = object_slots(node)
    slot = (max(slots) + 1) if slots else 1
    if name is None:
        taken = set(object_names(node))
        name = (
            "main"
            if "main" not in taken
            else next("object%d" % i for i in range(2, 1000) if "object%d" % i not in taken)
        )
    p = "o%d_" % slot
    node.addKnob(nuke.Text_Knob(p + "div", ""))
    k = nuke.String_Knob(p + "name", "object")
    k.setValue(name)
    k.setTooltip("names the matte files and, with one layer per object, the layer")
    node.addKnob(k)
    k = nuke.Boolean_Knob(p + "on", "enabled")
    k.setValue(True)
    k.clearFlag(nuke.STARTLINE)
    node.addKnob(k)
    node.addKnob(nuke.Text_Knob(p + "frames", "prompts on", "none yet"))
    for kind, sign in (("fg", "+"), ("bg", "-")):
        for i in range(1, POINTS_PER_KIND + 1):
            k = nuke.XY_Knob(p + "%s%d" % (kind, i), "%s %s%d" % (name, sign, i))
            k.setVisible(False)
            node.addKnob(k)
    k = nuke.BBox_Knob(p + "box", "%s box" % name)
    k.setVisible(False)
    node.addKnob(k)
    for suffix, label, call in (
        ("addfg", "+ point", "add_point(nuke.thisNode(), %d, True)"),
        ("addbg", "- point", "add_point(nuke.thisNode(), %d, False)"),
        ("setbox", "box", "set_box(nuke.thisNode(), %d)"),
        ("clear", "clear frame", "clear_frame(nuke.thisNode(), %d)"),
        ("remove", "remove object", "remove_object(nuke.thisNode(), %d)"),
    ):
        k = nuke.PyScript_Knob(p + suffix, label, _cmd(call % slot))
        if suffix != "addfg":
            k.clearFlag(nuke.STARTLINE)
        node.addKnob(k)
    rebuild(node)
    return slot


def remove_object(node, slot: int) -> None:
    for name in slot_knob_names(node, slot):
        node.removeKnob(node[name])
    rebuild(node)


def relabel(node, slot: int) -> None:
    """Handle labels follow the object's name (the Viewer shows them)."""
    name = str(node["o%d_name" % slot].value())
    for knob_name in slot_knob_names(node, slot):
        m = re.match(r"o\d+_(fg|bg)(\d+)$", knob_name)
        if m:
            node[knob_name].setLabel("%s %s%s" % (name, "+" if m.group(1) == "fg" else "-", m.group(2)))
        elif knob_name.endswith("_box"):
            node[knob_name].setLabel("%s box" % name)


def sync_visibility(node) -> None:
    """A point or box knob is shown (with its Viewer handle) when it has keys, hidden otherwise. Run when the
    node is created or loaded (onCreate): Nuke does not save knob visibility with the script."""
    for slot in object_slots(node):
        for knob_name in slot_knob_names(node, slot):
            if re.match(r"o\d+_(fg\d+|bg\d+|box)$", knob_name):
                knob = node[knob_name]
                knob.setVisible(bool(knob.isAnimated() and knob.getKeyList()))
    node["channel"].setVisible(str(node["output"].value()) == "channel")
    node["layer_prefix"].setVisible(str(node["output"].value()) != "channel")


# --- the internal graph -----------------------------------------------------------------------------
def read_path(node, obj: str) -> str:
    """The Read's file: the cache knob's text (TCL evaluated by Nuke, `this` -> the Group) + the object's files."""
    folder = str(node["cache"].getText()).rstrip("/").replace("[value this.", "[value parent.")
    return "%s/%s/%s.####.exr" % (folder, obj, obj)


def layer_name(prefix: str, obj: str) -> str:
    """Nuke layer names take letters, digits and '_': `mb_` + `hero.v2` -> `mb_hero_v2`."""
    return re.sub(r"[^A-Za-z0-9_]", "_", prefix + obj)


def _ensure_layer(channel: str) -> None:
    layer = channel.split(".", 1)[0]
    if layer not in nuke.layers():
        nuke.Layer(layer, [channel])


def rebuild(node) -> Optional[str]:
    """Recreate the internal Reads and Copies from the knobs; returns a problem to show, or None."""
    from .prompts import name_problem

    first, last = int(node["first"].value()), int(node["last"].value())
    mode = str(node["output"].value())
    node["channel"].setVisible(mode == "channel")
    node["layer_prefix"].setVisible(mode != "channel")
    objects, problem = [], None
    for slot in object_slots(node):
        name = str(node["o%d_name" % slot].value()).strip()
        if not node["o%d_on" % slot].value():
            continue
        bad = name_problem(name)
        if bad:
            problem = problem or bad  # that object gets no Read: its name would make a bad path
        elif name not in objects:
            objects.append(name)
    with node:
        for inner in node.nodes():
            if inner.name() not in ("plate", "Output1"):
                nuke.delete(inner)
        plate, output = node.node("plate"), node.node("Output1")
        reads = []
        for i, obj in enumerate(objects):
            read = nuke.nodes.Read(name="mb_read_%d" % (i + 1))
            read["file"].setValue(read_path(node, obj))
            for knob, value in (("first", first), ("last", last), ("origfirst", first), ("origlast", last)):
                read[knob].setValue(value)
            read["raw"].setValue(True)  # alpha is data: no colour transform
            read["before"].setValue("black")
            read["after"].setValue("black")
            read["on_error"].setValue(str(node["missing"].value()))
            reads.append((obj, read))
        stream = plate
        if reads and mode == "channel":
            channel = str(node["channel"].value()).strip()
            if "." not in channel:
                problem = problem or "channel %r: give layer.channel, e.g. rgba.alpha" % channel
            else:
                _ensure_layer(channel)
                matte = reads[0][1]
                for i, (_, read) in enumerate(reads[1:]):
                    merge = nuke.nodes.Merge2(name="mb_merge_%d" % (i + 1), operation="max")
                    merge.setInput(0, matte)
                    merge.setInput(1, read)
                    matte = merge
                copy = nuke.nodes.Copy(name="mb_copy_1", from0="rgba.alpha", to0=channel)
                copy.setInput(0, stream)
                copy.setInput(1, matte)
                stream = copy
        elif reads:
            prefix = str(node["layer_prefix"].value()).strip()
            for i, (obj, read) in enumerate(reads):
                channel = "%s.alpha" % layer_name(prefix, obj)
                _ensure_layer(channel)
                copy = nuke.nodes.Copy(name="mb_copy_%d" % (i + 1), from0="rgba.alpha", to0=channel)
                copy.setInput(0, stream)
                copy.setInput(1, read)
                stream = copy
        output.setInput(0, stream)
    return problem


def reload_reads(node) -> None:
    """The internal Reads read their files again (after mattes were published or put aside)."""
    with node:
        for inner in node.nodes():
            if inner.Class() == "Read":
                inner["reload"].execute()
