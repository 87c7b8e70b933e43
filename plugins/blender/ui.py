"""The MatteBridge panel in the Sequencer sidebar (N panel, tab "MatteBridge")."""

from __future__ import annotations

import bpy

from mattebridge.core.errors import MatteBridgeError

from . import operators, store, strips, tasks
from .props import preferences
from .runtime import STATE


class SEQUENCER_PT_mattebridge(bpy.types.Panel):
    bl_space_type = "SEQUENCE_EDITOR"
    bl_region_type = "UI"
    bl_category = "MatteBridge"
    bl_label = "MatteBridge"

    def draw(self, context):
        layout = self.layout
        scene = strips.sequencer_scene(context)
        cfg = scene.mattebridge
        self._server(context, layout.box())
        strip = scene.sequence_editor.active_strip if scene.sequence_editor else None
        try:
            if strip is None:
                raise MatteBridgeError("select an image strip")
            source = strips.describe(scene, strip)
        except MatteBridgeError as e:
            layout.label(text=str(e), icon="INFO")
            return
        col = layout.column(align=True)
        col.label(text=f"{strip.name}: frames {source.first}-{source.last}", icon="IMAGE_DATA")
        col.label(text=f"Colour: {strip.colorspace_settings.name}")
        layout.prop(cfg, "object")
        row = layout.row(align=True)
        row.operator("mattebridge.prompt_tool", icon="RESTRICT_SELECT_OFF")
        row.operator("mattebridge.preview", text="", icon="HIDE_OFF")
        try:
            frame = strips.file_frame(source, scene.frame_current)
            prompts = strips.load_prompts(strip)
            points, box = store.frame_prompt(prompts, cfg.object, frame)
            layout.label(
                text=f"Frame {frame}: {len(points)} point(s){', box' if box else ''}; "
                f"prompted frames: {', '.join(map(str, sorted(prompts.objects.get(cfg.object, {})))) or '-'}"
            )
        except MatteBridgeError as e:
            layout.label(text=str(e))
        row = layout.row(align=True)
        row.operator("mattebridge.clear", text="Clear Frame")
        op = row.operator("mattebridge.clear", text="Clear All")
        op.all_frames = True
        row = layout.row(align=True)
        row.prop(cfg, "show_overlay")
        row.prop(cfg, "overlay_opacity", text="")
        row.prop(cfg, "overlay_color", text="")
        layout.prop(cfg, "auto_preview")
        layout.separator()
        layout.prop(cfg, "direction", expand=True)
        job = STATE.track
        if job is not None and not job.finished:
            row = layout.row(align=True)
            row.progress(
                factor=job.fraction, type="BAR", text=f"Tracking {STATE.track_strip}: {job.done}/{job.total or '?'}"
            )
            row.operator("mattebridge.cancel", text="", icon="CANCEL")
        else:
            layout.operator("mattebridge.track", icon="TRACKING")
        layout.prop(cfg, "matte_folder", text="Mattes")
        if not cfg.matte_folder:
            layout.label(text=f"(default {preferences(context).matte_folder})")
        layout.operator("mattebridge.export_prompts", icon="EXPORT")
        level, text = STATE.last_message
        if text:
            layout.label(text=text, icon="ERROR" if level == "ERROR" else "INFO")

    def _server(self, context, box):
        prefs = preferences(context)
        server = STATE.server
        if server.status != "checking" and server.address != prefs.address and not tasks.inline():
            try:  # first draw, or the address changed: ask in the background, the timer redraws the panel
                operators.check_server(context)
            except MatteBridgeError as e:
                server.address, server.status, server.message = prefs.address, "error", str(e)
        row = box.row()
        if server.status == "ok" and server.address == prefs.address:
            info = server.info
            row.label(text=f"Server: {info.get('model', '?')} on {info.get('device', '?')}", icon="CHECKMARK")
        elif server.status == "checking":
            row.label(text="Server: checking...", icon="TIME")
        elif server.status == "error" and server.address == prefs.address:
            row.label(text="Server unreachable", icon="ERROR")
        else:
            row.label(text="Server: not checked", icon="QUESTION")
        row.operator("mattebridge.server_info", text="", icon="FILE_REFRESH")
        box.label(text=prefs.address)
        if server.status == "error" and server.message:
            box.label(text=server.message)


CLASSES = (SEQUENCER_PT_mattebridge,)
