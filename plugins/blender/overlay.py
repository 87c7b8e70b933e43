"""Drawing in the Sequencer preview: the preview matte as a tinted texture, this frame's prompts, the drag box."""

from __future__ import annotations

import bpy

from mattebridge.core.errors import MatteBridgeError

from . import store, strips
from .jobs import overlay_rgba
from .runtime import STATE

_handle = None
_textures = {}  # id(PreviewResult) -> (GPUTexture, colour, opacity)


def _texture(result, color, opacity):
    import gpu

    key = id(result)
    cached = _textures.get(key)
    if cached is not None and cached[1] == color and cached[2] == opacity:
        return cached[0]
    rgba = overlay_rgba(result.alpha, color, opacity)
    h, w = rgba.shape[:2]
    buf = gpu.types.Buffer("FLOAT", w * h * 4, rgba.ravel())
    tex = gpu.types.GPUTexture((w, h), format="RGBA16F", data=buf)
    if len(_textures) > 8:  # previews replaced since: let their textures go
        live = {id(r) for r in STATE.previews.values()}
        for k in [k for k in _textures if k not in live]:
            del _textures[k]
    _textures[key] = (tex, color, opacity)
    return tex


def draw() -> None:
    try:
        _draw(bpy.context)
    except (MatteBridgeError, ReferenceError, AttributeError):
        pass  # nothing to draw for this strip (not an image sequence, no strip, ...)


def _draw(context) -> None:
    import gpu
    from gpu_extras.batch import batch_for_shader

    scene = strips.sequencer_scene(context)
    if scene is None or scene.sequence_editor is None or scene.sequence_editor.active_strip is None:
        return
    cfg = scene.mattebridge
    strip = scene.sequence_editor.active_strip
    source = strips.describe(scene, strip)
    frame = strips.file_frame(source, scene.frame_current)
    geometry = STATE.geometry.get((scene.name, strip.name, frame))
    place = strips.placement(scene, strip, geometry)
    gpu.state.blend_set("ALPHA")
    result = STATE.previews.get((scene.name, strip.name, cfg.object, frame))
    if cfg.show_overlay and result is not None:
        tex = _texture(result, tuple(cfg.overlay_color), float(cfg.overlay_opacity))
        quad = place.image_quad_view()  # top-left, top-right, bottom-right, bottom-left
        shader = gpu.shader.from_builtin("IMAGE")
        batch = batch_for_shader(shader, "TRI_FAN", {"pos": quad, "texCoord": ((0, 1), (1, 1), (1, 0), (0, 0))})
        shader.uniform_sampler("image", tex)
        batch.draw(shader)
    prompts = strips.load_prompts(strip)
    shader = gpu.shader.from_builtin("UNIFORM_COLOR")
    gpu.state.point_size_set(8.0)
    for obj in prompts.objects:
        points, box = store.frame_prompt(prompts, obj, frame)
        dim = 1.0 if obj == cfg.object else 0.45
        for positive in (True, False):
            pts = [place.plate_to_view(x, y) for x, y, p in points if p == positive]
            if pts:
                shader.uniform_float(
                    "color",
                    (0.1 * dim, 1.0 * dim, 0.2 * dim, 1.0) if positive else (1.0 * dim, 0.15 * dim, 0.15 * dim, 1.0),
                )
                batch_for_shader(shader, "POINTS", {"pos": pts}).draw(shader)
        if box is not None:
            x0, y0, x1, y1 = box
            corners = [place.plate_to_view(x, y) for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))]
            shader.uniform_float("color", (1.0 * dim, 0.85 * dim, 0.1 * dim, 1.0))
            batch_for_shader(shader, "LINE_LOOP", {"pos": corners}).draw(shader)
    if STATE.drag is not None:
        region = context.region
        x0, y0, x1, y1 = STATE.drag
        a = region.view2d.region_to_view(x0, y0)
        b = region.view2d.region_to_view(x1, y1)
        shader.uniform_float("color", (1.0, 1.0, 1.0, 0.8))
        batch_for_shader(shader, "LINE_LOOP", {"pos": [a, (b[0], a[1]), b, (a[0], b[1])]}).draw(shader)
    gpu.state.point_size_set(1.0)
    gpu.state.blend_set("NONE")


def register() -> None:
    global _handle
    if _handle is None:
        _handle = bpy.types.SpaceSequenceEditor.draw_handler_add(draw, (), "PREVIEW", "POST_VIEW")


def unregister() -> None:
    global _handle
    if _handle is not None:
        bpy.types.SpaceSequenceEditor.draw_handler_remove(_handle, "PREVIEW")
        _handle = None
    _textures.clear()
