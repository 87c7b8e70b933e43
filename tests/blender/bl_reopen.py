"""A fresh Blender opens the saved .blend: the prompts and the matte set-up are still there."""

import os
import sys

import bpy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bl_common as bl  # noqa: E402


def main(a):
    r = {}
    bpy.ops.wm.open_mainfile(filepath=a["blend"])
    scene = bpy.context.scene
    ed = scene.sequence_editor
    strip = bl.every(ed)["plate"]
    r["raw_before_addon"] = strip["mattebridge"].to_dict()  # plain custom properties: no add-on needed
    bl.install(a["zip"])
    ed.active_strip = strip
    r["export"] = bl.call(bpy.ops.mattebridge.export_prompts, filepath=a["prompts_json"])
    r["modifiers"] = [
        (m.name, m.type, m.input_mask_strip.name if m.input_mask_strip else None) for m in strip.modifiers
    ]
    r["mattes"] = sorted(s.name for s in bl.every(ed) if s.get("mattebridge_matte_of"))
    r["settings_object"] = scene.mattebridge.object
    # the add-on unregisters cleanly and comes back
    bpy.ops.preferences.addon_disable(module=bl.MODULE)
    r["after_disable"] = [
        hasattr(bpy.types.Scene, "mattebridge"),
        hasattr(bpy.types, "SEQUENCER_PT_mattebridge"),
        len(bpy.app.handlers.load_post),
    ]
    bpy.ops.preferences.addon_enable(module=bl.MODULE)
    r["after_enable"] = [
        hasattr(bpy.types.Scene, "mattebridge"),
        hasattr(bpy.types, "SEQUENCER_PT_mattebridge"),
        len(bpy.app.handlers.load_post),
    ]
    r["prompts_after_reenable"] = bl.every(ed)["plate"]["mattebridge"].to_dict()
    return r


bl.run(main)
