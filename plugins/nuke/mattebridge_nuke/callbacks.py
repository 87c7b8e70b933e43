"""What the node's buttons and its knobChanged run (main thread). Jobs run in threads (jobs.py).

Nuke runs knobChanged after every knob change, the plugin's own setValue/setValueAt/removeKeyAt included
(nuke.addKnobChanged, Nuke 17.1 docs): whatever changes knobs here does it inside `_own_changes()`, which
knob_changed ignores, then updates what depends on them once.
"""

import contextlib
import functools
import os
import re
import sys
import traceback
from typing import Dict, Optional

import nuke

from . import node as mbnode
from . import nukehost
from .cache import MANIFEST, open_cache
from .jobs import BackgroundJob, JobError, Outcome
from .prompts import PromptError

PROMPT_KNOB = re.compile(r"o(\d+)_(fg\d+|bg\d+|box)$")
OBJECT_KNOB = re.compile(r"o(\d+)_(name|on)$")
OUTPUT_KNOBS = ("output", "channel", "layer_prefix", "missing", "cache")

_jobs: Dict[str, BackgroundJob] = {}  # node's full name -> its running job
_in_knob_changed = False  # True while the plugin itself changes knobs: knob_changed ignores those changes


@contextlib.contextmanager
def _own_changes():
    global _in_knob_changed
    outer = _in_knob_changed
    _in_knob_changed = True
    try:
        yield
    finally:
        _in_knob_changed = outer


def _status(node, text: str) -> None:
    node["status"].setValue(text)


def _fail(node, message: str) -> None:
    _status(node, "error: " + message)
    nuke.message("MatteBridge %s: %s" % (node.name(), message))


# --- Preview / Track / Cancel ------------------------------------------------------------------------
def running(node) -> Optional[BackgroundJob]:
    job = _jobs.get(node.fullName())
    return job if job is not None and job.thread is not None and job.thread.is_alive() else None


def preview(node) -> Optional[BackgroundJob]:
    return _start(node, "preview", int(nuke.frame()))


def track(node, direction: str) -> Optional[BackgroundJob]:
    return _start(node, direction)


def cancel(node) -> None:
    job = running(node)
    if job is not None:
        job.cancel()
        _status(node, "cancelling ...")


def _start(node, action: str, frame: Optional[int] = None) -> Optional[BackgroundJob]:
    busy = running(node)
    if busy is not None:
        nuke.message("MatteBridge %s is busy (%s): wait, or press Cancel" % (node.name(), busy.title))
        return None
    try:
        request = nukehost.gather(node, frame)
        if not request.prompts:
            raise JobError("no prompts yet: add a point or a box on the object, in the Viewer")
    except (JobError, PromptError) as e:
        _fail(node, str(e))
        return None
    key = node.fullName()
    job = BackgroundJob(
        request,
        nukehost.NukeHost(),
        action,
        frame,
        on_done=functools.partial(_finished, node, key),
        on_progress=functools.partial(_progress, node),
    )
    _jobs[key] = job
    _status(node, job.title + " ...")
    return job.start()


def _finished(node, key: str, outcome: Outcome) -> None:
    if _jobs.get(key) is not None and _jobs[key].outcome is outcome:
        del _jobs[key]
    try:
        mbnode.reload_reads(node)
        _status(node, outcome.message)
    except ValueError:  # the node was deleted while the job ran
        return
    if outcome.status == "failed":
        nuke.message("MatteBridge %s: %s" % (node.name(), outcome.message))


def _progress(node) -> None:
    try:
        mbnode.reload_reads(node)
    except ValueError:
        pass


# --- knobs ---------------------------------------------------------------------------------------------
def knob_changed(node, knob) -> None:
    """The Group's knobChanged: keys for dragged handles, the cache kept in line, the graph rebuilt. It runs
    for the user's edits; changes the plugin makes itself (inside _own_changes) are ignored."""
    if _in_knob_changed or knob is None:
        return
    with _own_changes():
        _knob_changed(node, knob)


def _knob_changed(node, knob) -> None:
    try:
        name = knob.name()
        prompt = PROMPT_KNOB.match(name)
        if prompt:
            key_here(knob)
            frames_text(node)
            sync(node)
        elif OBJECT_KNOB.match(name):
            slot = int(OBJECT_KNOB.match(name).group(1))
            if name.endswith("_name"):
                mbnode.relabel(node, slot)
            _rebuild(node)
            sync(node)
        elif name in ("first", "last"):
            _rebuild(node)
            sync(node)
        elif name == "edge":
            sync(node)
        elif name in OUTPUT_KNOBS:
            _rebuild(node)
    except (JobError, PromptError) as e:
        _status(node, "error: %s" % e)
    except Exception as e:  # noqa: BLE001 - a bug: keep Nuke usable, show it, log the details
        traceback.print_exc(file=sys.stderr)
        _status(node, "error: %s: %s (details in the console)" % (type(e).__name__, e))


def key_here(knob) -> None:
    """A prompt knob changed: make sure it has a key on the current frame (a prompt there)."""
    frame = nuke.frame()
    size = 4 if knob.Class() == "BBox_Knob" else 2
    values = [knob.value(i) for i in range(size)]
    if not knob.isAnimated():
        knob.setAnimated()
    if not knob.isKeyAt(frame):
        for i, v in enumerate(values):
            knob.setValueAt(v, frame, i)


def _rebuild(node) -> None:
    problem = mbnode.rebuild(node)
    if problem:
        _status(node, "error: " + problem)


def frames_text(node) -> None:
    """Each object's 'prompts on' line: the frames where its handles have keys."""
    for slot in mbnode.object_slots(node):
        frames = set()
        for name in mbnode.slot_knob_names(node, slot):
            if PROMPT_KNOB.match(name) and node[name].isAnimated():
                frames.update(int(round(t)) for t in node[name].getKeyList())
        node["o%d_frames" % slot].setValue(", ".join(str(f) for f in sorted(frames)) or "none yet")


def sync(node) -> None:
    """Put aside the mattes the current knobs no longer produce, bring back those they produce again."""
    try:
        root = nukehost.cache_root(node)
    except JobError:
        return  # unsaved script: nothing cached yet
    if not os.path.exists(os.path.join(root, MANIFEST)):
        return
    cache = open_cache(root)
    ctx = cache.context()
    if ctx is None:
        return
    first, last = nukehost.frame_range(node)
    new = ctx.replace(prompts=nukehost.node_prompts(node), settings=nukehost.settings(node), first=first, last=last)
    stashed, restored = cache.update(new)
    if stashed or restored:
        mbnode.reload_reads(node)
        _status(node, "%d mattes out of date (kept aside), %d brought back" % (stashed, restored))


# --- object buttons --------------------------------------------------------------------------------------
def add_object(node) -> int:
    with _own_changes():
        return mbnode.add_object(node)


def remove_object(node, slot: int) -> None:
    with _own_changes():
        mbnode.remove_object(node, slot)
        sync(node)


def _keyed(knob, values) -> None:
    frame = nuke.frame()
    knob.setVisible(True)
    if not knob.isAnimated():
        knob.setAnimated()
    for i, v in enumerate(values):
        knob.setValueAt(float(v), frame, i)


def add_point(node, slot: int, positive: bool) -> Optional[str]:
    """Show the object's next free point handle, keyed on the current frame in the middle of the image."""
    kind = "fg" if positive else "bg"
    free = [
        n
        for n in ("o%d_%s%d" % (slot, kind, i) for i in range(1, mbnode.POINTS_PER_KIND + 1))
        if n in node.knobs() and not node[n].visible()
    ]
    if not free:
        nuke.message(
            "MatteBridge: %d %s points is the most an object has here; move or clear one"
            % (mbnode.POINTS_PER_KIND, "foreground" if positive else "background")
        )
        return None
    x, y = nukehost.viewer_centre(node)
    index = int(re.search(r"(\d+)$", free[0]).group(1))
    with _own_changes():
        _keyed(node[free[0]], (x + 12.0 * (index - 1), y))
        frames_text(node)
        sync(node)
    return free[0]


def set_box(node, slot: int) -> None:
    """Key the object's box on the current frame (the middle half of the image, if it has none yet)."""
    knob = node["o%d_box" % slot]
    if knob.isAnimated() and knob.isKeyAt(nuke.frame()):
        return
    if knob.isAnimated() and knob.getKeyList():
        values = [knob.value(i) for i in range(4)]
    else:
        x, y = nukehost.viewer_centre(node)
        values = (x / 2.0, y / 2.0, x * 1.5, y * 1.5)
    with _own_changes():
        _keyed(knob, values)
        frames_text(node)
        sync(node)


def clear_frame(node, slot: int) -> None:
    """Remove the object's prompts on the current frame (the keys of its handles there)."""
    frame = nuke.frame()
    with _own_changes():  # else knobChanged would key the knob again right where the key was removed
        for name in mbnode.slot_knob_names(node, slot):
            knob = node[name]
            if PROMPT_KNOB.match(name) and knob.isAnimated() and knob.isKeyAt(frame):
                knob.removeKeyAt(frame)
                if not knob.getKeyList():
                    knob.clearAnimated()
                    knob.setVisible(False)
        frames_text(node)
        sync(node)


def purge(node) -> None:
    try:
        root = nukehost.cache_root(node)
    except JobError as e:
        _fail(node, str(e))
        return
    count = open_cache(root).purge_stash() if os.path.isdir(root) else 0
    _status(node, "deleted %d stale mattes" % count)
