"""The user's flow, scripted: prompts through the operators, preview, track, re-track, render, save."""

import os
import sys
import time

import bpy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bl_common as bl  # noqa: E402


def strip_state(ed, strip):
    return {
        "name": strip.name,
        "type": strip.type,
        "channel": strip.channel,
        "mute": strip.mute,
        "final_start": strip.frame_final_start,
        "final_end": strip.frame_final_end,
        "colorspace": strip.colorspace_settings.name,
        "directory": bpy.path.abspath(strip.directory),
        "files": [e.filename for e in strip.elements] if strip.type == "IMAGE" else [],
        "scale": [strip.transform.scale_x, strip.transform.scale_y],
        "matte_of": strip.get("mattebridge_matte_of"),
        "modifiers": [
            {
                "name": m.name,
                "type": m.type,
                "mask_type": m.input_mask_type,
                "mask_strip": m.input_mask_strip.name if m.input_mask_strip else None,
            }
            for m in strip.modifiers
        ],
    }


def main(a):
    r = {}
    bl.install(a["zip"])
    import zmq

    import mattebridge

    r["zmq_file"], r["mattebridge_file"] = zmq.__file__, mattebridge.__path__[0]
    bl.prefs().address = a["address"]
    bl.prefs().timeout = 30.0
    runtime = bl.addon("runtime")

    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 960, 540, 100
    bpy.ops.wm.save_as_mainfile(filepath=a["blend"])  # mattes go to //mattes/, next to it
    scene = bpy.context.scene
    strip = bl.image_strip(scene, "plate", a["plate_dir"], "plate.1001.exr", list(range(1001, 1021)))
    strip.colorspace_settings.name = "ACEScg"
    strip.frame_final_start, strip.frame_final_end = 3, 11  # visible: files 1003..1010
    ed = scene.sequence_editor
    ed.active_strip = strip

    r["server_info"] = bl.call(bpy.ops.mattebridge.server_info)
    r["server"] = {"status": runtime.STATE.server.status, "info": runtime.STATE.server.info}

    scene.frame_current = 5  # file 1005
    r["add_point"] = bl.call(bpy.ops.mattebridge.add_point, x=480.5, y=300.5)
    r["add_point_neg"] = bl.call(bpy.ops.mattebridge.add_point, x=60, y=40, negative=True)
    t0 = time.monotonic()
    r["preview"] = bl.call(bpy.ops.mattebridge.preview)
    r["preview_seconds"] = time.monotonic() - t0
    r["previews"] = {
        "/".join(map(str, k)): {
            "shape": list(v.alpha.shape),
            "dtype": str(v.alpha.dtype),
            "min": float(v.alpha.min()),
            "max": float(v.alpha.max()),
            "geometry": v.geometry,
        }
        for k, v in runtime.STATE.previews.items()
    }
    clips = [c for conn in runtime.STATE.connections.values() for c in conn.open_clips.values()]
    r["clip_colour"] = [[c.colorspace, c.display, c.view, c.config] for c in clips]  # as the server replied
    r["ocio_sent"] = bl.addon("strips").ocio_config()  # what the extension sends as the clip's `ocio`
    scene.frame_current = 8  # file 1008
    r["add_box"] = bl.call(bpy.ops.mattebridge.add_box, x0=700, y0=500, x1=300, y1=100)  # corners in any order
    r["prompts_before_track"] = strip["mattebridge"].to_dict()
    t0 = time.monotonic()
    r["preview_box"] = bl.call(bpy.ops.mattebridge.preview)  # the clip is open now: only the model's time
    r["preview_warm_seconds"] = time.monotonic() - t0
    r["previews_after_box"] = sorted("/".join(map(str, k)) for k in runtime.STATE.previews)

    t0 = time.monotonic()
    r["track"] = bl.call(bpy.ops.mattebridge.track, direction="BOTH")
    r["track_seconds"] = time.monotonic() - t0
    r["after_track"] = {s.name: strip_state(ed, s) for s in bl.every(ed)}

    # a grade limited by the matte, as a user would set it up: must follow the matte through a re-track
    matte_name = next((s.name for s in bl.every(ed) if s.get("mattebridge_matte_of")), None)
    if matte_name:
        with bpy.context.temp_override(sequencer_scene=scene):
            grade = strip.modifiers.new("Grade", "BRIGHT_CONTRAST")
        grade.input_mask_type = "STRIP"
        grade.input_mask_strip = bl.every(ed)[matte_name]

    # render timeline frame 5 with the Mask modifier: alpha of the result = the matte
    scene.frame_current = 5
    scene.view_settings.view_transform = "Standard"
    scene.render.image_settings.file_format = "OPEN_EXR"
    scene.render.image_settings.color_mode = "RGBA"
    scene.render.filepath = a["render"]
    bpy.ops.render.render(write_still=True)

    # a correction later on, then track again: the matte strip is replaced, not stacked
    scene.frame_current = 10  # file 1010
    r["add_correction"] = bl.call(bpy.ops.mattebridge.add_point, x=200, y=200, object="")
    r["add_second_object"] = bl.call(bpy.ops.mattebridge.add_point, x=800, y=100, object="prop")
    r["retrack"] = bl.call(bpy.ops.mattebridge.track, direction="FORWARD")
    r["after_retrack"] = {s.name: strip_state(ed, s) for s in bl.every(ed)}

    r["export"] = bl.call(bpy.ops.mattebridge.export_prompts, filepath=a["prompts_json"])
    r["clear_frame"] = bl.call(bpy.ops.mattebridge.clear)  # frame 1010 of "main"
    r["prompts_after_clear"] = strip["mattebridge"].to_dict()
    bpy.ops.wm.save_mainfile()
    return r


bl.run(main)
