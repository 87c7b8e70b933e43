"""The add-on's pure geometry and timing against Blender's own renderer.

mapping.Placement says where a plate pixel lands in the preview's view space; the sequencer render is that
view space as an image (render pixel = view + half the frame, y flipped). frames.StripTiming says which file a
timeline frame shows; rendering a plate whose frames hold their own number says which file Blender shows.
"""

import math
import os
import sys

import bpy
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bl_common as bl  # noqa: E402

W, H = 160, 120


def render(scene, path):
    scene.render.filepath = path
    bpy.ops.render.render(write_still=True)
    img = bpy.data.images.load(path)
    px = np.array(img.pixels[:], np.float32).reshape(img.size[1], img.size[0], 4)[::-1]  # top row first
    bpy.data.images.remove(img)
    return px


def bright_centre(px):
    lum = px[..., :3].mean(-1)
    ys, xs = np.nonzero(lum > 0.5 * lum.max())
    wts = lum[ys, xs]
    return float((xs * wts).sum() / wts.sum()) + 0.5, float((ys * wts).sum() / wts.sum()) + 0.5


def main(a):
    r = {"placements": [], "timing": []}
    bl.install(a["zip"])
    mapping, strips = bl.addon("mapping"), bl.addon("strips")
    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = W, H, 100
    scene.view_settings.view_transform = "Standard"
    scene.render.image_settings.file_format = "OPEN_EXR"
    scene.render.image_settings.color_mode = "RGBA"
    ed = scene.sequence_editor_create()

    cases = [
        ("fit", "FIT", {}),
        ("fill", "FILL", {}),
        ("original", "ORIGINAL", {}),
        ("stretch", "STRETCH", {}),
        ("offset", "FIT", {"offset": (13.0, -7.0)}),
        (
            "scale_rotate_origin",
            "ORIGINAL",
            {"scale": (1.5, 1.25), "rotation": math.radians(30), "origin": (0.25, 0.75)},
        ),
        ("flip_x", "FIT", {"flip_x": True, "offset": (5.0, 3.0)}),
        ("flip_y", "FIT", {"flip_y": True}),
    ]
    marker = a["marker"]  # plate pixel (x, y), top-left origin
    for name, fit, t in cases:
        strip = bl.top(ed).new_image(name, a["marker_plate"], 2, 1, fit_method=fit)
        if "offset" in t:
            strip.transform.offset_x, strip.transform.offset_y = t["offset"]
        if "scale" in t:
            strip.transform.scale_x, strip.transform.scale_y = t["scale"]
        if "rotation" in t:
            strip.transform.rotation = t["rotation"]
        if "origin" in t:
            strip.transform.origin = t["origin"]
        strip.use_flip_x, strip.use_flip_y = t.get("flip_x", False), t.get("flip_y", False)
        place = strips.placement(scene, strip)
        vx, vy = place.image_to_view(*marker)
        expected = (vx + W / 2, H / 2 - vy)
        seen = bright_centre(render(scene, os.path.join(a["work"], f"{name}.exr")))
        back = place.view_to_image(vx, vy)
        r["placements"].append(
            {
                "case": name,
                "expected": expected,
                "seen": seen,
                "back": back,
                "fit_scale": mapping.fit_scale(fit, place.image_w, place.image_h, W, H),
                "scale": [strip.transform.scale_x, strip.transform.scale_y],
            }
        )
        bl.top(ed).remove(strip)

    # an EXR whose data window (40x30 at 10, 5) is smaller than its display window (80x60): Blender shows the
    # data window; a click maps to display-window pixels through the geometry the server reports
    strip = bl.top(ed).new_image("data_window", a["window_plate"], 2, 1, fit_method="FIT")
    place = strips.placement(scene, strip, {"display": [0, 0, 80, 60], "data": [10, 5, 40, 30]})
    vx, vy = place.plate_to_view(*a["window_marker"])
    seen = bright_centre(render(scene, os.path.join(a["work"], "data_window.exr")))
    r["data_window"] = {
        "expected": (vx + W / 2, H / 2 - vy),
        "seen": seen,
        "size": [place.image_w, place.image_h],
        "back": place.view_to_plate(vx, vy),
    }
    bl.top(ed).remove(strip)

    # timing: file N holds the value N/64 everywhere
    for name, setup in (
        ("plain", {}),
        ("trimmed", {"anim": (2, 1), "handles": (12, 17)}),
        ("reversed", {"anim": (2, 0), "handles": (11, 18), "reverse": True}),
    ):
        strip = bl.image_strip(scene, name, a["numbered_dir"], "num.0001.exr", list(range(1, 11)), frame_start=10)
        if "anim" in setup:
            strip.animation_offset_start, strip.animation_offset_end = setup["anim"]
        if "handles" in setup:
            strip.frame_final_start, strip.frame_final_end = setup["handles"]
        strip.use_reverse_frames = setup.get("reverse", False)
        source = strips.describe(scene, strip)
        rows = []
        for f in range(strip.frame_final_start - 1, strip.frame_final_end + 1):
            scene.frame_current = f
            value = float(render(scene, os.path.join(a["work"], f"t_{name}_{f}.exr"))[0, 0, 0])
            element = source.timing.element_at(f)
            rows.append(
                {
                    "frame": f,
                    "blender_file": round(value * 64),
                    "predicted": None if element is None else source.files.frames[element],
                }
            )
        r["timing"].append(
            {
                "case": name,
                "rows": rows,
                "shown": source.shown,
                "spec": [source.spec.pattern, source.spec.frames, source.spec.colorspace, source.spec.ocio],
            }
        )
        bl.top(ed).remove(strip)
    return r


bl.run(main)
