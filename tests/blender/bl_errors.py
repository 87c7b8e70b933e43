"""What goes wrong is reported (operator report / status bar), never raised as a Python traceback."""

import math
import os
import sys

import bpy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bl_common as bl  # noqa: E402


def main(a):
    r = {}
    bl.install(a["zip"])
    scene = bpy.context.scene
    ed = scene.sequence_editor_create()
    scene.frame_current = 1

    # nothing selected
    r["no_strip"] = bl.call(bpy.ops.mattebridge.add_point, x=10, y=10)

    # strip types MatteBridge cannot read
    color = bl.color_strip(ed, "color", 5, 1, 10)
    ed.active_strip = color
    r["color_strip"] = bl.call(bpy.ops.mattebridge.add_point, x=10, y=10)
    gap = bl.image_strip(scene, "gappy", a["plate_dir"], "plate.1001.exr", [1001], channel=6)
    gap.elements.append("plate.1003.exr")
    ed.active_strip = gap
    r["gap_strip"] = bl.call(bpy.ops.mattebridge.add_point, x=10, y=10)

    plate = bl.image_strip(scene, "plate", a["plate_dir"], "plate.1001.exr", list(range(1001, 1006)), channel=2)
    ed.active_strip = plate
    r["not_finite"] = bl.call(bpy.ops.mattebridge.add_point, x=math.nan, y=10)
    r["bad_object"] = bl.call(bpy.ops.mattebridge.add_point, x=10, y=10, object="no spaces/slashes")
    r["dot_object"] = bl.call(bpy.ops.mattebridge.add_point, x=10, y=10, object=".hidden")
    r["long_object"] = bl.call(
        bpy.ops.mattebridge.add_point, x=10, y=10, object="x" * 64
    )  # core's limit, not Blender's
    r["max_object"] = bl.call(bpy.ops.mattebridge.add_point, x=10, y=10, object="x" * 63)
    bl.call(bpy.ops.mattebridge.clear, object="x" * 63)

    # the interactive tool, from a script / without a preview
    r["prompt_tool_exec"] = bl.call(bpy.ops.mattebridge.prompt_tool)

    # nothing prompted
    r["nothing_prompted"] = bl.call(bpy.ops.mattebridge.track, direction="FORWARD")

    # relative matte folder in an unsaved .blend
    r["add_point"] = bl.call(bpy.ops.mattebridge.add_point, x=10, y=10)
    r["unsaved_blend"] = bl.call(bpy.ops.mattebridge.track, direction="FORWARD")
    scene.mattebridge.matte_folder = a["matte_folder"]

    # a prompt on a frame the strip's handles hide
    plate.frame_final_start = 3  # file 1001 (timeline 1) is no longer shown
    r["hidden_prompt"] = bl.call(bpy.ops.mattebridge.track, direction="FORWARD")
    plate.frame_final_start = 1

    # a server on another machine while Blender's "Allow Online Access" is off (the default without a UI)
    bl.prefs().address = "tcp://192.0.2.1:5557"
    r["online_access"] = [bpy.app.online_access, bl.call(bpy.ops.mattebridge.preview)]

    # server down: every request reports, quickly (timeout x retries), and nothing is raised
    bl.prefs().address = a["dead_address"]
    bl.prefs().timeout = 0.3
    r["dead_info"] = bl.call(bpy.ops.mattebridge.server_info)
    r["dead_preview"] = bl.call(bpy.ops.mattebridge.preview)
    r["dead_track"] = bl.call(bpy.ops.mattebridge.track, direction="BOTH")
    runtime = bl.addon("runtime")
    r["server_state"] = [runtime.STATE.server.status, runtime.STATE.server.message]
    r["strips_after_dead_track"] = sorted(s.name for s in bl.every(ed))

    # a live server that cannot read the file
    bl.prefs().address, bl.prefs().timeout = a["address"], 30.0
    broken = bl.image_strip(scene, "broken", a["broken_dir"], "broken.0001.exr", [1, 2], channel=7)
    ed.active_strip = broken
    r["broken_add"] = bl.call(bpy.ops.mattebridge.add_point, x=1, y=1)
    r["broken_preview"] = bl.call(bpy.ops.mattebridge.preview)

    # folders the server was not told to allow (docs/blender.md, Install): a plate folder, a matte folder
    elsewhere = bl.image_strip(scene, "elsewhere", a["outside_plate_dir"], "broken.0001.exr", [1, 2], channel=8)
    ed.active_strip = elsewhere
    bl.call(bpy.ops.mattebridge.add_point, x=1, y=1)
    r["outside_plate"] = bl.call(bpy.ops.mattebridge.preview)
    ed.active_strip = plate
    scene.mattebridge.matte_folder = a["outside_matte_folder"]
    r["outside_mattes"] = bl.call(bpy.ops.mattebridge.track, direction="FORWARD")
    r["strips_after_outside_track"] = sorted(s.name for s in bl.every(ed))
    return r


bl.run(main)
