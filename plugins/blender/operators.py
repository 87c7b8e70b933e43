"""bpy.ops.mattebridge.*: prompts on the active strip, preview, track, and the prompt tool for the preview."""

import json
import math
import os
import traceback
from typing import Optional

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, StringProperty
from bpy_extras.io_utils import ExportHelper

from mattebridge.core.errors import MatteBridgeError

from . import jobs, store, strips, tasks
from .jobs import BackgroundJob
from .mapping import gesture
from .props import preferences, settings
from .runtime import STATE

OBJECT_DESC = "Object to prompt (empty: the panel's object)"


def _object(context, name: str) -> str:
    return store.check_object_name(name or settings(strips.sequencer_scene(context)).object)


def _source(context):
    """(scene, strip, source) of the active strip."""
    scene = strips.sequencer_scene(context)
    strip = strips.active_strip(scene)
    return scene, strip, strips.describe(scene, strip)


def _target(context):
    """(scene, strip, source, file frame at the current frame) of the active strip."""
    scene, strip, source = _source(context)
    return scene, strip, source, strips.file_frame(source, scene.frame_current)


def _guard(op, fn):
    """Run `fn()`; errors become one-line operator reports, never a traceback in the UI (a bug's traceback
    still goes to the console, for the bug report)."""
    try:
        return fn()
    except MatteBridgeError as e:
        op.report({"ERROR"}, f"MatteBridge: {jobs.one_line(str(e))}")
    except Exception as e:
        traceback.print_exc()
        op.report({"ERROR"}, f"MatteBridge: unexpected {type(e).__name__}: {jobs.one_line(str(e))} (see the console)")
    return {"CANCELLED"}


def _check_finite(*values):
    if not all(math.isfinite(v) for v in values):
        raise MatteBridgeError("coordinates must be finite numbers")


class _SequencerOp:
    """Operators on the active strip: always runnable, so a missing strip is reported in words (execute)
    rather than as a failed poll."""

    @classmethod
    def poll(cls, context):
        return strips.sequencer_scene(context) is not None


# --- prompts ---------------------------------------------------------------------------------------
def add_point(context, x: float, y: float, negative: bool, obj: str):
    _check_finite(x, y)
    scene, strip, source, frame = _target(context)
    obj = _object(context, obj)
    prompts = strips.load_prompts(strip)
    store.add_point(prompts, obj, frame, x, y, not negative)
    strips.save_prompts(strip, prompts)
    return scene, strip, obj, frame


def add_box(context, box, obj: str):
    _check_finite(*box)
    scene, strip, source, frame = _target(context)
    obj = _object(context, obj)
    prompts = strips.load_prompts(strip)
    store.set_box(prompts, obj, frame, box)
    strips.save_prompts(strip, prompts)
    return scene, strip, obj, frame


class MATTEBRIDGE_OT_add_point(_SequencerOp, bpy.types.Operator):
    """Add a click on the active strip at the current frame (plate pixels, origin top-left, y down)"""

    bl_idname = "mattebridge.add_point"
    bl_label = "Add Point"
    bl_options = {"REGISTER", "UNDO"}

    x: FloatProperty(name="X", description="Plate display-window pixels from the left")
    y: FloatProperty(name="Y", description="Plate display-window pixels from the top")
    negative: BoolProperty(name="Background", description="A background (negative) click")
    object: StringProperty(name="Object", description=OBJECT_DESC)

    def execute(self, context):
        def go():
            scene, strip, obj, frame = add_point(context, self.x, self.y, self.negative, self.object)
            self.report({"INFO"}, f"{obj}: {'background' if self.negative else 'foreground'} point on frame {frame}")
            return {"FINISHED"}

        return _guard(self, go)


class MATTEBRIDGE_OT_add_box(_SequencerOp, bpy.types.Operator):
    """Set the box around the subject on the current frame (replaces this frame's box)"""

    bl_idname = "mattebridge.add_box"
    bl_label = "Add Box"
    bl_options = {"REGISTER", "UNDO"}

    x0: FloatProperty(name="X0")
    y0: FloatProperty(name="Y0")
    x1: FloatProperty(name="X1")
    y1: FloatProperty(name="Y1")
    object: StringProperty(name="Object", description=OBJECT_DESC)

    def execute(self, context):
        def go():
            box = (self.x0, self.y0, self.x1, self.y1)
            scene, strip, obj, frame = add_box(context, box, self.object)
            self.report({"INFO"}, f"{obj}: box on frame {frame}")
            return {"FINISHED"}

        return _guard(self, go)


class MATTEBRIDGE_OT_clear(_SequencerOp, bpy.types.Operator):
    """Remove prompts from the active strip"""

    bl_idname = "mattebridge.clear"
    bl_label = "Clear Prompts"
    bl_options = {"REGISTER", "UNDO"}

    object: StringProperty(name="Object", description=OBJECT_DESC)
    all_objects: BoolProperty(name="All Objects", description="Every object, not just one")
    all_frames: BoolProperty(name="All Frames", description="Every frame, not just the current one")

    def execute(self, context):
        def go():
            scene = strips.sequencer_scene(context)
            strip = strips.active_strip(scene)
            source = strips.describe(scene, strip)
            frame = None if self.all_frames else strips.file_frame(source, scene.frame_current)
            obj = None if self.all_objects else _object(context, self.object)
            prompts = strips.load_prompts(strip)
            removed = store.clear(prompts, obj, frame)
            strips.save_prompts(strip, prompts)
            for key in [
                k
                for k in STATE.previews
                if k[:2] == (scene.name, strip.name)
                and (obj is None or k[2] == obj)
                and (frame is None or k[3] == frame)
            ]:
                del STATE.previews[key]
            tasks.redraw()
            self.report({"INFO"}, f"cleared {removed} prompted frame(s)")
            return {"FINISHED"}

        return _guard(self, go)


# --- server ----------------------------------------------------------------------------------------
def _address(context):
    prefs = preferences(context)
    jobs.check_online_access(prefs.address, getattr(bpy.app, "online_access", True))
    return prefs.address, prefs.timeout


def _connection(context):
    return STATE.connection(*_address(context))


def check_server(context) -> BackgroundJob:
    conn = _connection(context)
    STATE.server.address, STATE.server.status = conn.address, "checking"

    def handle(job, event):
        if event.kind == "done":
            STATE.server.status, STATE.server.info, STATE.server.message = "ok", event.data["result"], ""
        elif event.kind == "error":
            STATE.server.status, STATE.server.info, STATE.server.message = "error", {}, event.data["message"]

    return tasks.submit(BackgroundJob("info", lambda job: jobs.server_info(conn)), handle)


class MATTEBRIDGE_OT_server_info(bpy.types.Operator):
    """Check that the MatteBridge server answers, and which model and device it runs"""

    bl_idname = "mattebridge.server_info"
    bl_label = "Check Server"

    def execute(self, context):
        try:
            job = check_server(context)
        except MatteBridgeError as e:
            STATE.server.status, STATE.server.message = "error", jobs.one_line(str(e))
            self.report({"ERROR"}, f"MatteBridge: {STATE.server.message}")
            return {"CANCELLED"}
        if job.state == "error":
            self.report({"ERROR"}, f"MatteBridge: {job.message}")
            return {"CANCELLED"}
        if job.state == "done":
            info = job.result
            self.report(
                {"INFO"},
                f"MatteBridge server {info.get('server_version', '?')}: "
                f"{info.get('model', '?')} on {info.get('device', '?')}",
            )
        return {"FINISHED"}


def request_preview(context, obj: Optional[str] = None, report=None) -> BackgroundJob:
    scene, strip, source, frame = _target(context)
    obj = _object(context, obj or "")
    points, box = store.frame_prompt(strips.load_prompts(strip), obj, frame)
    conn = _connection(context)
    key = (scene.name, strip.name, obj, frame)
    serial = STATE.preview_serial[key] = STATE.preview_serial.get(key, 0) + 1
    say = report or tasks.notify

    def handle(job, event):
        if STATE.preview_serial.get(key) != serial:
            return  # a newer click on the same frame superseded this one
        if event.kind == "done":
            result = event.data["result"]
            if result is None:
                STATE.previews.pop(key, None)
            else:
                STATE.previews[key] = result
                for f, geometry in (result.geometries or {}).items():
                    STATE.geometry[(scene.name, strip.name, f)] = geometry
                STATE.geometry[(scene.name, strip.name, frame)] = result.geometry
        elif event.kind == "error":
            say("ERROR", f"MatteBridge: {event.data['message']}")

    return tasks.submit(
        BackgroundJob("preview", lambda job: jobs.preview(conn, source.spec, frame, obj, points, box)), handle
    )


class MATTEBRIDGE_OT_preview(_SequencerOp, bpy.types.Operator):
    """Ask the server for the current frame's matte from this frame's prompts and overlay it"""

    bl_idname = "mattebridge.preview"
    bl_label = "Preview Matte"

    object: StringProperty(name="Object", description=OBJECT_DESC)

    def execute(self, context):
        def go():
            job = request_preview(context, self.object, report=lambda level, msg: self.report({level}, msg))
            if job.state == "error":
                return {"CANCELLED"}
            return {"FINISHED"}

        return _guard(self, go)


# --- track -----------------------------------------------------------------------------------------
def start_track(context, direction: str, report) -> BackgroundJob:
    scene, strip, source = _source(context)
    if STATE.track is not None and not STATE.track.finished:
        raise MatteBridgeError(f"a track is already running on {STATE.track_strip!r}: cancel it first")
    prompts = strips.load_prompts(strip)
    if prompts.is_empty():
        raise MatteBridgeError(
            f"nothing prompted on {strip.name!r}: click on the subject first (prompt tool "
            "or bpy.ops.mattebridge.add_point)"
        )
    first, last = source.first, source.last
    outside = [f for f in prompts.frames() if not first <= f <= last]
    if outside:
        raise MatteBridgeError(
            f"prompts on file frame(s) {', '.join(map(str, outside))} are outside the strip's "
            f"visible frames {first}-{last}: clear them or extend the strip"
        )
    prefs = preferences(context)
    _address(context)
    cfg = settings(scene)
    folder = strips.matte_folder(scene, prefs)
    digits = source.files.name_pattern.count("#") or 4
    name_pattern = jobs.matte_name_pattern(scene.name, strip.name, digits)
    out = os.path.join(folder, name_pattern)
    shown = source.shown
    objects = list(prompts.objects)
    mask_object = cfg.object if cfg.object in objects else objects[0]
    request = jobs.TrackRequest(
        prefs.address, source.spec, prompts.to_json(), out, jobs.parse_direction(direction), prefs.timeout
    )
    scene_name, strip_name, blend = scene.name, strip.name, bpy.data.filepath

    def handle(job, event):
        if event.kind == "done" and bpy.data.filepath != blend:
            report("WARNING", f"MatteBridge: another .blend was opened during the track; mattes are in {folder}")
        elif event.kind == "done":
            scene_now = bpy.data.scenes.get(scene_name)
            if scene_now is None or scene_now.sequence_editor is None:
                report("ERROR", f"MatteBridge: scene {scene_name!r} is gone; mattes are in {folder}")
                return
            made = strips.install_mattes(
                scene_now, strip_name, strips.matte_paths(folder, name_pattern, objects, shown), mask_object
            )
            summary = event.data["result"] or {}
            report(
                "INFO",
                f"MatteBridge: tracked {summary.get('frames_written', 0)} frame(s) "
                f"({summary.get('frames_skipped', 0)} unchanged) in "
                f"{jobs.time_text(job.elapsed)}: {', '.join(made.values())}",
            )
        elif event.kind == "cancelled":
            report("WARNING", f"MatteBridge: track of {strip_name!r} cancelled; strips unchanged")
        elif event.kind == "error":
            report("ERROR", f"MatteBridge: {event.data['message']}")

    job = BackgroundJob("track", lambda j: jobs.track(j, request))
    STATE.track, STATE.track_strip = job, strip.name
    return tasks.submit(job, handle)


class MATTEBRIDGE_OT_track(_SequencerOp, bpy.types.Operator):
    """Track the prompted objects through the active strip and put their mattes in the channel above"""

    bl_idname = "mattebridge.track"
    bl_label = "Track"

    direction: EnumProperty(
        name="Direction",
        default="BOTH",
        items=(("FORWARD", "Forward", ""), ("BACKWARD", "Backward", ""), ("BOTH", "Both", "")),
    )

    def invoke(self, context, event):
        self.direction = settings(strips.sequencer_scene(context)).direction
        return self.execute(context)

    def execute(self, context):
        if tasks.inline():  # scripts (bpy.app.background): run to completion, report here

            def go():
                job = start_track(context, self.direction, lambda level, msg: self.report({level}, msg))
                return {"FINISHED"} if job.state == "done" else {"CANCELLED"}
        else:

            def go():
                start_track(context, self.direction, tasks.notify)
                self.report({"INFO"}, "MatteBridge: tracking (Esc or Cancel in the panel to stop)")
                return {"FINISHED"}

        return _guard(self, go)


class MATTEBRIDGE_OT_cancel(bpy.types.Operator):
    """Stop the running track (frames already written stay on disk)"""

    bl_idname = "mattebridge.cancel"
    bl_label = "Cancel Track"

    @classmethod
    def poll(cls, context):
        return STATE.track is not None and not STATE.track.finished

    def execute(self, context):
        STATE.track.cancel()
        return {"FINISHED"}


class MATTEBRIDGE_OT_export_prompts(_SequencerOp, bpy.types.Operator, ExportHelper):
    """Save the active strip's prompts as a prompts JSON file (for `mattebridge track --prompts`)"""

    bl_idname = "mattebridge.export_prompts"
    bl_label = "Export Prompts"
    filename_ext = ".json"
    filter_glob: StringProperty(default="*.json", options={"HIDDEN"})

    def execute(self, context):
        def go():
            strip = strips.active_strip(strips.sequencer_scene(context))
            doc = strips.load_prompts(strip).to_json()
            with open(self.filepath, "w", encoding="utf-8") as f:
                json.dump(doc, f, indent=1)
            self.report({"INFO"}, f"MatteBridge: prompts of {strip.name!r} saved to {self.filepath}")
            return {"FINISHED"}

        try:
            return go()
        except OSError as e:
            self.report({"ERROR"}, f"MatteBridge: cannot write {self.filepath}: {e.strerror}")
            return {"CANCELLED"}
        except MatteBridgeError as e:
            self.report({"ERROR"}, f"MatteBridge: {jobs.one_line(str(e))}")
            return {"CANCELLED"}


class MATTEBRIDGE_OT_notify(bpy.types.Operator):
    """Internal: show a message from a finished background job in the status bar"""

    bl_idname = "mattebridge.notify"
    bl_label = "MatteBridge Message"
    bl_options = {"INTERNAL"}

    level: StringProperty(default="INFO")
    message: StringProperty()

    def execute(self, context):
        self.report({self.level if self.level in ("INFO", "WARNING", "ERROR") else "INFO"}, self.message)
        return {"FINISHED"}


# --- the prompt tool ---------------------------------------------------------------------------------
DRAG_PIXELS = 5


def _preview_region(area):
    """The area's visible preview region (a Sequencer area in timeline-only view keeps a zero-size one)."""
    for region in area.regions:
        if region.type == "PREVIEW" and region.width > 1 and region.height > 1:
            return region
    return None


def _inside(region, event) -> bool:
    x, y = event.mouse_x - region.x, event.mouse_y - region.y
    return 0 <= x < region.width and 0 <= y < region.height


def _over_other_region(area, event) -> bool:
    """Sidebar, toolbar and header can overlap the preview: clicks there are theirs."""
    return any(
        r.type in ("UI", "TOOLS", "HEADER", "TOOL_HEADER", "HUD", "FOOTER")
        and r.width > 1
        and r.height > 1
        and _inside(r, event)
        for r in area.regions
    )


class MATTEBRIDGE_OT_prompt_tool(_SequencerOp, bpy.types.Operator):
    """Click on the subject in the preview: click = foreground, Ctrl+click = background, drag = box.
    Right-click or Esc to stop"""

    bl_idname = "mattebridge.prompt_tool"
    bl_label = "Prompt Tool"

    def execute(self, context):
        self.report({"ERROR"}, "MatteBridge: the prompt tool is interactive; scripts use add_point and add_box")
        return {"CANCELLED"}

    def invoke(self, context, event):
        area = context.area
        if area is None or area.type != "SEQUENCE_EDITOR" or _preview_region(area) is None:
            areas = context.screen.areas if context.screen is not None else []
            area = next((a for a in areas if a.type == "SEQUENCE_EDITOR" and _preview_region(a)), None)
        if area is None:
            self.report({"ERROR"}, "MatteBridge: open a Sequencer preview first")
            return {"CANCELLED"}
        try:
            _target(context)
        except MatteBridgeError as e:
            self.report({"ERROR"}, f"MatteBridge: {jobs.one_line(str(e))}")
            return {"CANCELLED"}
        self._area, self._press = area, None
        context.window_manager.modal_handler_add(self)
        area.header_text_set(
            "MatteBridge: click = foreground, Ctrl+click = background, drag = box, Right-click/Esc = done"
        )
        return {"RUNNING_MODAL"}

    def _finish(self, context):
        STATE.drag = None
        try:
            self._area.header_text_set(None)
            self._area.tag_redraw()
        except ReferenceError:
            pass
        return {"FINISHED"}

    def modal(self, context, event):
        try:
            region = _preview_region(self._area)
        except ReferenceError:  # the area went away (layout change)
            return self._finish(context)
        if region is None:
            return self._finish(context)
        mx, my = event.mouse_x - region.x, event.mouse_y - region.y
        inside = _inside(region, event) and not _over_other_region(self._area, event)
        if event.type in {"ESC", "RIGHTMOUSE"} and event.value == "PRESS":
            return self._finish(context)
        if event.type == "LEFTMOUSE" and event.value == "PRESS" and inside:
            self._press = (mx, my, event.ctrl)
            return {"RUNNING_MODAL"}
        if event.type == "MOUSEMOVE" and self._press is not None:
            STATE.drag = (self._press[0], self._press[1], mx, my)
            self._area.tag_redraw()
            return {"RUNNING_MODAL"}
        if event.type == "LEFTMOUSE" and event.value == "RELEASE" and self._press is not None:
            x0, y0, ctrl = self._press
            self._press, STATE.drag = None, None
            self._click(context, region, (x0, y0), (mx, my), ctrl)
            self._area.tag_redraw()
            return {"RUNNING_MODAL"}
        return {"PASS_THROUGH"}

    def _click(self, context, region, start, end, negative):
        try:
            scene = strips.sequencer_scene(context)
            strip = strips.active_strip(scene)
            source = strips.describe(scene, strip)
            frame = strips.file_frame(source, scene.frame_current)
            placement = strips.placement(scene, strip, STATE.geometry.get((scene.name, strip.name, frame)))
            prompt = gesture(
                placement,
                region.view2d.region_to_view(*start),
                region.view2d.region_to_view(*end),
                math.dist(start, end) >= DRAG_PIXELS,
                negative,
            )
            if prompt is None:
                self.report({"WARNING"}, "MatteBridge: click or drag inside the image")
                return
            if prompt[0] == "point":
                add_point(context, prompt[1], prompt[2], not prompt[3], "")
            else:
                add_box(context, prompt[1:], "")
            bpy.ops.ed.undo_push(message="MatteBridge prompt")
            if settings(scene).auto_preview:
                request_preview(context)
        except MatteBridgeError as e:
            self.report({"ERROR"}, f"MatteBridge: {jobs.one_line(str(e))}")


CLASSES = (
    MATTEBRIDGE_OT_add_point,
    MATTEBRIDGE_OT_add_box,
    MATTEBRIDGE_OT_clear,
    MATTEBRIDGE_OT_server_info,
    MATTEBRIDGE_OT_preview,
    MATTEBRIDGE_OT_track,
    MATTEBRIDGE_OT_cancel,
    MATTEBRIDGE_OT_export_prompts,
    MATTEBRIDGE_OT_notify,
    MATTEBRIDGE_OT_prompt_tool,
)
