"""A STAND-IN for Nuke's `nuke` module, for tests only. It is not Nuke.

It implements just the documented calls the MatteBridge plugin makes (Nuke Python API: nuke.createNode,
nuke.nodes.<Class>, Group.begin/end/node/nodes, Node.knobs/addKnob/removeKnob/input/setInput/format/bbox,
the knob classes' value/setValue/getValueAt/setValueAt/setAnimated/isKeyAt/getKeyList/removeKeyAt,
EvalString_Knob.evaluate, PyScript_Knob.execute, nuke.execute, nuke.executeInMainThread[WithResult],
nuke.ProgressTask, nuke.message, nuke.Layer/layers, nuke.menu, nuke.pluginPath) and raises on anything
else: unknown functions, classes, knobs and enumeration values. Nodes and knobs may only be touched from
the thread that reset the stand-in (Nuke's main thread); calls from other threads raise, and
executeInMainThread work waits in a queue until the test pumps it (`process_events`).

Where Nuke is less kind than a naive fake, so is this (docs/nuke.md lists each for a real-Nuke check):
- executeInMainThreadWithResult: when the call raises, Nuke prints the traceback and returns None (it does
  not re-raise: nuke_internal/executeInMain.py); called from the main thread it would hang Nuke, so here
  it raises StandinError("... would hang in Nuke").
- knobChanged runs on every knob value change, programmatic ones included, with the panel open or closed,
  and with dummy knobs (showPanel, inputChange) when the panel opens or an input changes
  (nuke.addKnobChanged, Nuke 17.1 docs).
- A fresh Write has no `datatype`/`compression` knobs: they appear when `file_type` becomes exr, and
  nuke.nodes.Write(**knobs) only takes knobs a fresh Write has (the order Nuke applies them in is not
  documented).
- File_Knob.value() gives frame numbers in printf notation (`%04d`) even where `####` was typed.
- A Read's `colorspace` reads the bare `default` until set (Nuke may also show `default (sRGB)`).

To let tests look at pixels it also renders a few node classes (Read, Write, Copy, Merge2, Grade, Dot,
Input, Output, Group) with OpenImageIO and numpy, following Nuke's conventions as documented: origin
bottom-left, y up, format = display window, bbox = data window. In proxy mode it assumes the worst Nuke
could do: formats, bboxes and renders come out scaled by the proxy scale. What it cannot prove is
listed in docs/nuke.md (manual checklist).

Helpers that are not part of Nuke's API are prefixed `standin_`.
"""

import os
import queue
import re
import sys
import threading
import time
import traceback

import numpy as np

INVISIBLE = 0x400
STARTLINE = 0x1000

_state = {}


class StandinError(RuntimeError):
    """The plugin did something the stand-in does not allow (undocumented call, wrong thread, ...)."""


def _main_only():
    if threading.current_thread() is not _state.get("main"):
        raise StandinError("nuke objects touched off the main thread (use nuke.executeInMainThread)")


class _Guarded:
    """Every public attribute of nodes and knobs is main-thread only, like Nuke's."""

    def __getattribute__(self, name):
        if not name.startswith("_"):
            _main_only()
        return object.__getattribute__(self, name)


# --- formats, boxes, layers -----------------------------------------------------------------------
class Format:
    def __init__(self, width, height, aspect=1.0):
        self._w, self._h, self._a = int(width), int(height), float(aspect)

    def width(self):
        return self._w

    def height(self):
        return self._h

    def pixelAspect(self):  # noqa: N802
        return self._a


class Box:
    def __init__(self, x, y, r, t):
        self._b = (int(x), int(y), int(r), int(t))

    def x(self):
        return self._b[0]

    def y(self):
        return self._b[1]

    def w(self):
        return self._b[2] - self._b[0]

    def h(self):
        return self._b[3] - self._b[1]


BUILTIN_LAYERS = ["rgb", "rgba", "alpha", "depth", "motion", "forward", "backward", "mask"]


class Layer:
    def __init__(self, name, channels):
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError("standin: bad layer name %r" % name)
        for c in channels:
            if not c.startswith(name + "."):
                raise ValueError("standin: channel %r is not in layer %r" % (c, name))
        self._name, self._channels = name, list(channels)
        _state["layers"][name] = self


def layers(node=None):
    if node is not None:
        raise StandinError("standin: layers(node) is not implemented")
    return BUILTIN_LAYERS + list(_state["layers"])


# --- knobs ----------------------------------------------------------------------------------------
def _changed(knob):
    """Nuke runs the node's knobChanged after any change of a knob's value, programmatic or not."""
    if _state.get("quiet"):
        return
    node = knob._node
    if node is None:
        return
    script = node._knobs.get("knobChanged")
    if script is not None and script is not knob and script._value:
        _run_script(script._value, node, knob)


class Knob(_Guarded):
    def __init__(self, name, label=None, *rest):
        self._name, self._label = name, label if label is not None else name
        self._flags, self._tooltip, self._visible, self._node = 0, "", True, None

    def name(self):
        return self._name

    def label(self):
        return self._label

    def setLabel(self, label):  # noqa: N802
        self._label = label

    def setTooltip(self, text):  # noqa: N802
        self._tooltip = text

    def setFlag(self, flag):  # noqa: N802
        self._flags |= flag
        if flag & INVISIBLE:
            self._visible = False

    def clearFlag(self, flag):  # noqa: N802
        self._flags &= ~flag

    def setVisible(self, visible):  # noqa: N802
        self._visible = bool(visible)

    def visible(self):
        return self._visible

    def node(self):
        return self._node

    def Class(self):  # noqa: N802
        return type(self).__name__

    def isAnimated(self):  # noqa: N802
        return False

    def toScript(self):  # noqa: N802
        return str(self.value())


class Tab_Knob(Knob):  # noqa: N801
    def value(self):
        return ""


class String_Knob(Knob):  # noqa: N801
    def __init__(self, name, label=None, value=""):
        super().__init__(name, label)
        self._value = str(value)

    def value(self):
        return self._value

    def getText(self):  # noqa: N802
        return self._value

    def setValue(self, value):  # noqa: N802
        self._value = str(value)
        _changed(self)


class EvalString_Knob(String_Knob):  # noqa: N801
    def evaluate(self):
        return _tcl(self._value, self._node)


class File_Knob(EvalString_Knob):  # noqa: N801
    def value(self):
        """Like Nuke: frame numbers in printf notation, `####` -> `%04d` (getText() keeps what was typed)."""
        return re.sub(r"#+", lambda m: "%%0%dd" % len(m.group(0)), self._value)


class Text_Knob(String_Knob):  # noqa: N801
    pass


class Int_Knob(Knob):  # noqa: N801
    def __init__(self, name, label=None):
        super().__init__(name, label)
        self._value = 0

    def value(self):
        return self._value

    def setValue(self, value):  # noqa: N802
        if isinstance(value, bool) or int(value) != value:
            raise TypeError("standin: Int_Knob %s: %r is not an int" % (self._name, value))
        self._value = int(value)
        _changed(self)


class Double_Knob(Knob):  # noqa: N801
    def __init__(self, name, label=None):
        super().__init__(name, label)
        self._value = 0.0

    def value(self):
        return self._value

    def setValue(self, value):  # noqa: N802
        self._value = float(value)
        _changed(self)


class Boolean_Knob(Knob):  # noqa: N801
    def __init__(self, name, label=None, value=False):
        super().__init__(name, label)
        self._value = bool(value)

    def value(self):
        return self._value

    def setValue(self, value):  # noqa: N802
        self._value = bool(value)
        _changed(self)


class Enumeration_Knob(Knob):  # noqa: N801
    def __init__(self, name, label, values):
        super().__init__(name, label)
        self._values, self._index = list(values), 0

    def value(self):
        return self._values[self._index]

    def setValue(self, value):  # noqa: N802
        if isinstance(value, int) and not isinstance(value, bool):
            if not 0 <= value < len(self._values):
                raise ValueError("standin: %s: no item %d" % (self._name, value))
            self._index = value
        elif value in self._values:
            self._index = self._values.index(value)
        else:
            raise ValueError("standin: %s: %r is not one of %s" % (self._name, value, self._values))
        if self._node is not None and self._node._class == "Write" and self._name == "file_type":
            self._node._file_type_knobs()
        _changed(self)


class PyScript_Knob(Knob):  # noqa: N801
    def __init__(self, name, label=None, command=""):
        super().__init__(name, label)
        self._command = command

    def value(self):
        return self._command

    def setValue(self, command):  # noqa: N802
        self._command = command

    def execute(self):
        _run_script(self._command, self._node, self)


class _Reload(PyScript_Knob):
    """A Read's reload button: counts presses (tests check the output was refreshed)."""

    def execute(self):
        self._node._reloads += 1


class Array_Knob(Knob):  # noqa: N801
    SIZE = 1

    def __init__(self, name, label=None):
        super().__init__(name, label)
        self._values = [0.0] * self.SIZE
        self._curves = None  # [ {time: value} per channel ] when animated

    def _check(self, index):
        if not isinstance(index, int) or not 0 <= index < self.SIZE:
            raise StandinError("standin: %s: give a channel index 0..%d" % (self._name, self.SIZE - 1))

    def isAnimated(self):  # noqa: N802
        return self._curves is not None

    def setAnimated(self):  # noqa: N802
        """Animated, with a key on the current frame holding the current values."""
        if self._curves is None:
            now = frame()
            self._curves = [{now: v} for v in self._values]
            _changed(self)

    def clearAnimated(self):  # noqa: N802
        if self._curves is not None:
            self._values = [self.getValueAt(frame(), i) for i in range(self.SIZE)]
            self._curves = None
            _changed(self)

    def getValueAt(self, time, index):  # noqa: N802
        self._check(index)
        if self._curves is None:
            return self._values[index]
        keys = self._curves[index]
        if not keys:
            return self._values[index]
        times = sorted(keys)
        if time <= times[0]:
            return keys[times[0]]
        if time >= times[-1]:
            return keys[times[-1]]
        for a, b in zip(times, times[1:]):
            if a <= time <= b:
                return keys[a] + (keys[b] - keys[a]) * (time - a) / float(b - a)
        raise AssertionError("unreachable")

    def value(self, index):
        return self.getValueAt(frame(), index)

    def setValue(self, value, index):  # noqa: N802
        """Like Nuke: on an animated knob this sets a key on the current frame."""
        self._check(index)
        if self._curves is None:
            self._values[index] = float(value)
        else:
            self._curves[index][frame()] = float(value)
        _changed(self)

    def setValueAt(self, value, time, index):  # noqa: N802
        self._check(index)
        if self._curves is None:
            raise StandinError(
                "standin: %s: setValueAt on a knob that is not animated (call setAnimated first)" % self._name
            )
        self._curves[index][float(time)] = float(value)
        _changed(self)

    def isKeyAt(self, time):  # noqa: N802
        return self._curves is not None and any(float(time) in c for c in self._curves)

    def getKeyList(self):  # noqa: N802
        if self._curves is None:
            return []
        return sorted({t for c in self._curves for t in c})

    def removeKeyAt(self, time):  # noqa: N802
        if self._curves is not None:
            for c in self._curves:
                c.pop(float(time), None)
            _changed(self)

    def toScript(self):  # noqa: N802
        if self._curves is None:
            return " ".join("%g" % v for v in self._values)
        return " ".join("{curve %s}" % " ".join("x%g %g" % (t, v) for t, v in sorted(c.items())) for c in self._curves)


class XY_Knob(Array_Knob):  # noqa: N801
    SIZE = 2


class BBox_Knob(Array_Knob):  # noqa: N801
    SIZE = 4


class Format_Knob(Knob):  # noqa: N801
    def __init__(self, name, label=None):
        super().__init__(name, label)
        self._format = Format(1920, 1080)

    def value(self):
        return self._format

    def setValue(self, fmt):  # noqa: N802
        self._format = fmt
        _changed(self)

    def toScript(self):  # noqa: N802
        f = self._format
        return "%d %d 0 0 %d %d %g" % (f.width(), f.height(), f.width(), f.height(), f.pixelAspect())


# --- nodes ----------------------------------------------------------------------------------------
def _exr_knobs():
    return [
        _enum("datatype", ["16 bit half", "32 bit float"]),
        _enum(
            "compression",
            [
                "none",
                "Zip (1 scanline)",
                "Zip (16 scanlines)",
                "PIZ Wavelet (32 scanlines)",
                "RLE",
                "B44",
                "DWAA",
                "DWAB",
            ],
            "Zip (1 scanline)",
        ),
    ]


def _enum(name, values, default=None):
    k = Enumeration_Knob(name, name, values)
    if default is not None:
        k._index = values.index(default)
    return k


def _string(name, value=""):
    return String_Knob(name, name, value)


def _int(name, value=0):
    k = Int_Knob(name, name)
    k._value = value
    return k


def _bool(name, value=False):
    return Boolean_Knob(name, name, value)


def _double(name, value=0.0):
    k = Double_Knob(name, name)
    k._value = value
    return k


def _common():
    return [_string("name"), _int("xpos"), _int("ypos"), _bool("selected"), _string("label"), _bool("disable")]


CLASS_KNOBS = {
    "Read": lambda: [
        File_Knob("file", "file"),
        _int("first", 1),
        _int("last", 1),
        _int("origfirst", 1),
        _int("origlast", 1),
        _string("frame"),
        _enum("frame_mode", ["expression", "start at", "offset"]),
        _bool("raw"),
        _string("colorspace", "default"),
        _enum("before", ["hold", "loop", "bounce", "black"]),
        _enum("after", ["hold", "loop", "bounce", "black"]),
        _enum("on_error", ["error", "black", "checkerboard", "nearest frame"]),
        _Reload("reload", "reload"),
    ],
    # datatype and compression come with file_type exr (Node._file_type_knobs), as in Nuke
    "Write": lambda: [
        File_Knob("file", "file"),
        _enum("file_type", ["", "exr", "dpx", "tiff", "png", "jpeg"]),
        _enum("channels", ["rgb", "rgba", "alpha", "all"], "rgb"),
    ],
    "Copy": lambda: [
        _string("from0", "rgba.alpha"),
        _string("to0", "rgba.alpha"),
        _enum("bbox", ["union", "B side", "A side", "intersection"]),
    ],
    "Merge2": lambda: [_enum("operation", ["over", "plus", "max", "min", "multiply", "screen"])],
    "Grade": lambda: [_double("multiply", 1.0)],
    "Dot": lambda: [],
    "Input": lambda: [_int("number", 0)],
    "Output": lambda: [],
    "Group": lambda: [_string("knobChanged"), _string("onCreate")],
    "Root": lambda: [
        File_Knob("name", "name"),
        _int("first_frame", 1),
        _int("last_frame", 100),
        _bool("proxy"),
        _double("proxy_scale", 0.5),
        Format_Knob("format", "format"),
        _enum("colorManagement", ["Nuke", "OCIO"], "OCIO"),
        _string("OCIO_config", "custom"),
        _string("customOCIOConfigPath"),
        _string("workingSpaceLUT", "scene_linear"),
    ],
}


class Node(_Guarded):
    def __init__(self, cls, parent):
        if cls not in CLASS_KNOBS:
            raise StandinError("standin: node class %r is not implemented" % cls)
        self._class, self._parent, self._inputs = cls, parent, []
        self._knobs = {}
        self._children = [] if cls in ("Group", "Root") else None
        self._reloads, self._panel_shown = 0, False
        for k in ([] if cls == "Root" else _common()) + CLASS_KNOBS[cls]():
            self._attach(k)

    def _file_type_knobs(self):
        """A Write's format knobs follow its file_type: exr adds datatype and compression, others drop them."""
        exr = self._knobs["file_type"].value() == "exr"
        for knob in _exr_knobs():
            if exr and knob._name not in self._knobs:
                self._attach(knob)
            elif not exr:
                self._knobs.pop(knob._name, None)

    def _dummy_knob_changed(self, name):
        """Nuke also runs knobChanged with dummy knobs when the panel opens or an input changes."""
        script = self._knobs.get("knobChanged")
        if script is not None and script._value and not _state.get("quiet"):
            dummy = Knob(name)
            dummy._node = self
            _run_script(script._value, self, dummy)

    def _attach(self, knob):
        if knob._name in self._knobs:
            raise StandinError("standin: %s already has a knob %r" % (self._class, knob._name))
        knob._node = self
        self._knobs[knob._name] = knob

    # identity
    def Class(self):  # noqa: N802
        return self._class

    def name(self):
        return self._knobs["name"].value()

    def setName(self, name):  # noqa: N802
        taken = {n.name() for n in self._parent._children if n is not self}
        if name in taken:
            i = 1
            while "%s%d" % (name, i) in taken:
                i += 1
            name = "%s%d" % (name, i)
        self._knobs["name"].setValue(name)

    def fullName(self):  # noqa: N802
        if self._parent is None or self._parent._class == "Root":
            return self.name()
        return self._parent.fullName() + "." + self.name()

    # knobs
    def knobs(self):
        return dict(self._knobs)

    def __getitem__(self, name):
        if name not in self._knobs:
            raise NameError("knob %s does not exist" % name)
        return self._knobs[name]

    def addKnob(self, knob):  # noqa: N802
        self._attach(knob)

    def removeKnob(self, knob):  # noqa: N802
        if self._knobs.get(knob._name) is not knob:
            raise ValueError("standin: knob %s is not on %s" % (knob._name, self.name()))
        del self._knobs[knob._name]

    # graph
    def input(self, i):
        return self._inputs[i] if i < len(self._inputs) else None

    def inputs(self):
        return len(self._inputs)

    def setInput(self, i, node):  # noqa: N802
        while len(self._inputs) <= i:
            self._inputs.append(None)
        self._inputs[i] = node
        while self._inputs and self._inputs[-1] is None:
            self._inputs.pop()
        self._dummy_knob_changed("inputChange")
        return True

    def showControlPanel(self):  # noqa: N802
        self._panel_shown = True
        self._dummy_knob_changed("showPanel")

    # group
    def begin(self):
        if self._children is None:
            raise StandinError("standin: begin() on a %s" % self._class)
        _state["context"].append(self)

    def end(self):
        if _state["context"][-1] is not self:
            raise StandinError("standin: end() without begin()")
        _state["context"].pop()

    def __enter__(self):
        self.begin()
        return self

    def __exit__(self, *exc):
        self.end()

    def nodes(self):
        return list(self._children)

    def node(self, name):
        for n in self._children:
            if n.name() == name:
                return n
        return None

    # what the node outputs (rendered by the stand-in at the current frame)
    def format(self):
        if self._class == "Root":
            return self["format"].value()
        image = standin_render(self, frame())
        return Format(image.format[0], image.format[1], image.format[2])

    def bbox(self):
        return Box(*standin_render(self, frame()).bbox)

    def firstFrame(self):  # noqa: N802
        if self._class == "Read":
            return self["first"].value()
        if self.input(0) is not None:
            return self.input(0).firstFrame()
        return _state["root"]["first_frame"].value()

    def lastFrame(self):  # noqa: N802
        if self._class == "Read":
            return self["last"].value()
        if self.input(0) is not None:
            return self.input(0).lastFrame()
        return _state["root"]["last_frame"].value()


def _context():
    return _state["context"][-1]


def _create(cls, **knobs):
    _main_only()
    parent = _context()
    node = Node(cls, parent)
    parent._children.append(node)
    node.setName(cls + "1" if cls not in ("Input", "Output") else cls + "1")
    missing = [name for name in knobs if name not in node._knobs]
    if missing:  # checked before any is set: in which order Nuke applies them is not documented
        raise StandinError("standin: a new %s has no knob %s" % (cls, ", ".join(repr(n) for n in missing)))
    for name, value in knobs.items():
        node._knobs[name].setValue(value)
    return node


class _NodeFactory:
    def __getattr__(self, cls):
        if cls not in CLASS_KNOBS or cls == "Root":
            raise AttributeError("standin: nuke.nodes.%s is not implemented" % cls)
        return lambda **knobs: _create(cls, **knobs)


nodes = _NodeFactory()


def createNode(cls, knobs="", inpanel=True):  # noqa: N802
    """Like Nuke: the new node is connected below the selected node (standin_select)."""
    if knobs:
        raise StandinError("standin: createNode knobs string is not implemented")
    node = _create(cls)
    selected = _state.get("selected")
    if selected is not None:
        node.setInput(0, selected)
    if inpanel:
        node._panel_shown = True
    return node


def delete(node):
    _main_only()
    node._parent._children.remove(node)
    for other in node._parent._children:
        other._inputs = [None if i is node else i for i in other._inputs]


def root():
    _main_only()
    return _state["root"]


def frame():
    return _state["frame"]


def thisNode():  # noqa: N802
    if not _state["this"]:
        raise StandinError("standin: thisNode() outside a callback")
    return _state["this"][-1][0]


def thisKnob():  # noqa: N802
    if not _state["this"]:
        raise StandinError("standin: thisKnob() outside a callback")
    return _state["this"][-1][1]


def _run_script(script, node, knob):
    _state["this"].append((node, knob))
    try:
        exec(compile(script, "<%s.%s>" % (node.name(), knob.name()), "exec"), {"nuke": sys.modules[__name__]})
    finally:
        _state["this"].pop()


def message(text):
    _main_only()
    _state["messages"].append(str(text))


def pluginPath():  # noqa: N802
    return list(_state["plugin_path"])


class Menu:
    def __init__(self, name):
        self._name, self._items = name, {}

    def addMenu(self, name, **kwargs):  # noqa: N802
        if kwargs.keys() - {"icon", "tooltip", "index"}:
            raise StandinError("standin: addMenu(%s)" % kwargs)
        return self._items.setdefault(name, Menu(name))

    def addCommand(self, name, command, shortcut="", icon="", tooltip="", index=-1):  # noqa: N802
        self._items[name] = command
        return command

    def standin_items(self):
        return dict(self._items)


def menu(name):
    return _state["menus"].setdefault(name, Menu(name))


# --- threads --------------------------------------------------------------------------------------
def executeInMainThread(call, args=(), kwargs=None):  # noqa: N802
    if not isinstance(args, tuple):
        args = (args,)
    _state["queue"].put((call, tuple(args), dict(kwargs or {}), None))


def executeInMainThreadWithResult(call, args=(), kwargs=None):  # noqa: N802
    """Like Nuke (nuke_internal/executeInMain.py): waits for the main thread; if the call raised, the traceback
    is printed and None comes back. From the main thread Nuke would wait for itself forever."""
    if threading.current_thread() is _state["main"]:
        raise StandinError(
            "standin: executeInMainThreadWithResult called on the main thread: this would hang in "
            "Nuke (it waits for the main thread, which is the caller)"
        )
    if not isinstance(args, tuple):
        args = (args,)
    done = {"event": threading.Event()}
    _state["queue"].put((call, tuple(args), dict(kwargs or {}), done))
    done["event"].wait()
    if "error" in done:
        traceback.print_exception(type(done["error"]), done["error"], done["error"].__traceback__)
        return None
    return done["result"]


class ProgressTask:
    def __init__(self, title):
        self._title, self._message, self._progress, self._cancelled = title, "", 0, False
        self.standin_history = []
        _state["tasks"].append(self)

    def setMessage(self, text):  # noqa: N802
        self._message = text

    def setProgress(self, percent):  # noqa: N802
        if not isinstance(percent, int):
            raise TypeError("standin: setProgress takes an int")
        self._progress = percent
        self.standin_history.append(percent)

    def isCancelled(self):  # noqa: N802
        return self._cancelled

    def standin_cancel(self):
        """What the Cancel button of Nuke's progress bar does."""
        self._cancelled = True


def execute(node, start, end, incr=1):
    _main_only()
    if node._class != "Write":
        raise StandinError("standin: execute() of a %s" % node._class)
    for f in range(int(start), int(end) + 1, int(incr)):
        _write_frame(node, f)
    _state["executed"].append(
        (node.name(), int(start), int(end), bool(_state["root"]["proxy"].value()), node["file"].value())
    )


# --- the stand-in's own controls (not Nuke API) -----------------------------------------------------
def standin_reset(plugin_path=()):
    _state.clear()
    _state.update(
        main=threading.current_thread(),
        frame=1,
        this=[],
        messages=[],
        tasks=[],
        executed=[],
        layers={},
        menus={},
        queue=queue.Queue(),
        selected=None,
        plugin_path=list(plugin_path),
    )
    _state["context"] = []
    r = Node("Root", None)
    _state["root"] = r
    _state["context"].append(r)


def standin_set_frame(f):
    _state["frame"] = int(f)


def standin_select(node):
    _state["selected"] = node


def standin_messages():
    return list(_state["messages"])


def standin_tasks():
    return list(_state["tasks"])


def standin_executed():
    return list(_state["executed"])


def standin_process_events(until=None, timeout=60.0):
    """Run queued main-thread work until `until()` is true (or once, without `until`)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            call, args, kwargs, done = _state["queue"].get(timeout=0.02)
        except queue.Empty:
            call = None
        if call is not None:
            try:
                result = call(*args, **kwargs)
                if done is not None:
                    done["result"] = result
            except BaseException as e:  # noqa: BLE001 - handed to the waiting thread
                if done is None:
                    raise
                done["error"] = e
            finally:
                if done is not None:
                    done["event"].set()
        if until is None and _state["queue"].empty():
            return
        if until is not None and until() and _state["queue"].empty():
            return
        if time.monotonic() > deadline:
            raise TimeoutError("standin: events did not settle in %gs" % timeout)


def standin_user_set(knob, *values):
    """What a user's edit in the panel or a handle drag in the Viewer does: the value changes (with a key
    on the current frame if the knob is animated), then the node's knobChanged runs once."""
    _state["quiet"] = True
    try:
        if isinstance(knob, Array_Knob):
            for i, v in enumerate(values):
                knob.setValue(v, i)
        else:
            knob.setValue(values[0])
    finally:
        _state["quiet"] = False
    _changed(knob)


def standin_load(node):
    """What loading a saved script does to a node's runtime state: knob visibility is not saved (every knob
    comes back visible), then the node's onCreate runs."""
    for knob in node._knobs.values():
        knob._visible = not knob._flags & INVISIBLE
    script = node._knobs.get("onCreate")
    if script is not None and script.value():
        _run_script(script.value(), node, script)


def standin_press(knob):
    """A button press in the panel."""
    knob.execute()


# --- TCL: just what file knobs here use -------------------------------------------------------------
def _tcl(text, node):
    def command(expr):
        words = expr.split(None, 2)
        if len(words) == 2 and words[0] == "value":
            owner, _, knob = words[1].rpartition(".")
            target = {"root": _state["root"], "this": node, "parent": node._parent}.get(owner)
            if target is None:
                raise StandinError("standin: TCL value %s is not implemented" % words[1])
            return str(target[knob].value())
        if len(words) in (2, 3) and words[:2] == ["file", "dirname"]:
            path = words[2] if len(words) == 3 else ""
            return os.path.dirname(path) or "."
        raise StandinError("standin: TCL [%s] is not implemented" % expr)

    while "[" in text:
        m = re.search(r"\[([^\[\]]*)\]", text)
        if not m:
            raise StandinError("standin: unbalanced TCL in %r" % text)
        text = text[: m.start()] + command(m.group(1)) + text[m.end() :]
    return text


def _frame_path(pattern, f):
    m = re.search(r"%0?(\d*)d", pattern)
    if m:
        return pattern[: m.start()] + "%0*d" % (int(m.group(1) or 0), f) + pattern[m.end() :]
    m = re.search(r"#+", pattern)
    if m:
        return pattern[: m.start()] + "%0*d" % (len(m.group(0)), f) + pattern[m.end() :]
    return pattern


# --- rendering: Nuke's conventions, y up ----------------------------------------------------------------
class Image:
    """format (w, h, aspect); bbox (x, y, r, t); channels name -> (t - y, r - x) float32, row 0 at the bottom."""

    def __init__(self, fmt, bbox, channels):
        self.format, self.bbox, self.channels = fmt, tuple(int(v) for v in bbox), channels

    def placed(self, name, bbox):
        """Channel `name` over another bbox (zero where this image has no pixels)."""
        x, y, r, t = bbox
        out = np.zeros((t - y, r - x), np.float32)
        src = self.channels.get(name)
        if src is None:
            return out
        sx, sy, sr, st = self.bbox
        ix0, iy0, ix1, iy1 = max(x, sx), max(y, sy), min(r, sr), min(t, st)
        if ix1 > ix0 and iy1 > iy0:
            out[iy0 - y : iy1 - y, ix0 - x : ix1 - x] = src[iy0 - sy : iy1 - sy, ix0 - sx : ix1 - sx]
        return out


EXR_TO_NUKE = {"R": "red", "G": "green", "B": "blue", "A": "alpha"}


def _channel_name(exr_name):
    layer, _, chan = exr_name.rpartition(".")
    chan = EXR_TO_NUKE.get(chan, chan)
    return "%s.%s" % (layer or "rgba", chan)


def _black(fmt):
    return Image(fmt, (0, 0, fmt[0], fmt[1]), {})


def _root_format():
    f = _state["root"]["format"].value()
    return (f.width(), f.height(), f.pixelAspect())


def _read_frame(node, f):
    import OpenImageIO as oiio

    first, last = node["first"].value(), node["last"].value()
    if f < first or f > last:
        side = node["before"].value() if f < first else node["after"].value()
        if side == "black":
            return _black(_root_format())
        f = min(max(f, first), last)
    path = _frame_path(_tcl(node["file"].value(), node), f)
    if not os.path.exists(path):
        if node["on_error"].value() == "black":
            return _black(_root_format())
        raise StandinRenderError("%s: %s is missing" % (node.name(), path))
    inp = oiio.ImageInput.open(path)
    spec = inp.spec()
    pixels = np.asarray(inp.read_image(0, 0, 0, spec.nchannels, "float")).reshape(spec.height, spec.width, -1)
    inp.close()
    fw, fh = spec.full_width, spec.full_height
    left = spec.x - spec.full_x
    top = fh - (spec.y - spec.full_y)
    bbox = (left, top - spec.height, left + spec.width, top)
    channels = {_channel_name(n): np.ascontiguousarray(pixels[::-1, :, i]) for i, n in enumerate(spec.channelnames)}
    aspect = spec.get_float_attribute("PixelAspectRatio", 1.0)
    return Image((fw, fh, aspect), bbox, channels)


class StandinRenderError(RuntimeError):
    pass


def _proxy(image):
    """Worst case for proxy mode: everything Nuke reports and renders is scaled (nearest pixel)."""
    s = _state["root"]["proxy_scale"].value()
    w, h, a = image.format
    x, y, r, t = image.bbox
    bbox = (int(np.floor(x * s)), int(np.floor(y * s)), int(np.ceil(r * s)), int(np.ceil(t * s)))
    cols = np.clip(((np.arange(bbox[0], bbox[2]) + 0.5) / s).astype(int) - x, 0, r - x - 1)
    rows = np.clip(((np.arange(bbox[1], bbox[3]) + 0.5) / s).astype(int) - y, 0, t - y - 1)
    channels = {n: c[np.ix_(rows, cols)] for n, c in image.channels.items()}
    return Image((int(round(w * s)), int(round(h * s)), a), bbox, channels)


def standin_render(node, f, proxy=None):
    """The node's output image at frame f (in proxy mode: scaled, as it would be viewed)."""
    proxy = _state["root"]["proxy"].value() if proxy is None else proxy
    image = _render(node, f)
    return _proxy(image) if proxy else image


def _render(node, f):
    cls = node._class
    if cls != "Group" and node["disable"].value():
        return _render(node.input(0), f) if node.input(0) is not None else _black(_root_format())
    if cls == "Read":
        return _read_frame(node, f)
    if cls in ("Dot", "Write", "Output"):
        return _render(node.input(0), f)
    if cls == "Input":
        group = node._parent
        outer = group.input(node["number"].value())
        if outer is None:
            raise StandinRenderError("%s: input %d is not connected" % (group.name(), node["number"].value()))
        return _render(outer, f)
    if cls == "Group":
        outputs = [n for n in node._children if n._class == "Output"]
        return _render(outputs[0], f)
    if cls == "Grade":
        img = _render(node.input(0), f)
        m = node["multiply"].value()
        return Image(
            img.format,
            img.bbox,
            {n: (c * m if n.startswith("rgba.") and not n.endswith("alpha") else c) for n, c in img.channels.items()},
        )
    if cls == "Copy":
        b, a = _render(node.input(0), f), _render(node.input(1), f)
        box = _union(b.bbox, a.bbox)
        channels = {n: b.placed(n, box) for n in b.channels}
        channels[node["to0"].value()] = a.placed(node["from0"].value(), box)
        return Image(b.format, box, channels)
    if cls == "Merge2":
        if node["operation"].value() != "max":
            raise StandinError("standin: Merge2 %s is not implemented" % node["operation"].value())
        b, a = _render(node.input(0), f), _render(node.input(1), f)
        box = _union(b.bbox, a.bbox)
        names = set(b.channels) | set(a.channels)
        return Image(b.format, box, {n: np.maximum(b.placed(n, box), a.placed(n, box)) for n in names})
    raise StandinError("standin: rendering a %s is not implemented" % cls)


def _union(p, q):
    return (min(p[0], q[0]), min(p[1], q[1]), max(p[2], q[2]), max(p[3], q[3]))


def _write_frame(node, f):
    import OpenImageIO as oiio

    image = standin_render(node.input(0), f)  # in proxy mode this is scaled: what a proxy render gives
    if node["file_type"].value() != "exr":
        raise StandinError("standin: Write renders only exr")
    names = {"rgb": ["red", "green", "blue"], "rgba": ["red", "green", "blue", "alpha"]}[node["channels"].value()]
    w, h, aspect = image.format
    x, y, r, t = image.bbox
    datatype = node["datatype"].value() if "datatype" in node._knobs else "16 bit half"
    spec = oiio.ImageSpec(r - x, t - y, len(names), "float" if datatype == "32 bit float" else "half")
    spec.x, spec.y = x, h - t
    spec.full_x, spec.full_y, spec.full_width, spec.full_height = 0, 0, w, h
    spec.channelnames = tuple({"red": "R", "green": "G", "blue": "B", "alpha": "A"}[n] for n in names)
    spec.attribute("PixelAspectRatio", float(aspect))
    spec.attribute("compression", "zip")
    pixels = np.stack([image.placed("rgba." + n, image.bbox)[::-1] for n in names], -1)
    path = _frame_path(node["file"].value(), f)
    out = oiio.ImageOutput.create(path)
    if out is None or not out.open(path, spec):
        raise RuntimeError("Write: cannot write %s" % path)
    out.write_image(np.ascontiguousarray(pixels, np.float32))
    out.close()
