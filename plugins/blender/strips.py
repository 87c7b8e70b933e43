"""Blender side of a strip: read it into the pure descriptions, store prompts on it, install mattes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional

import bpy

from . import store
from .errors import PluginError
from .frames import FileSequence, StripTiming, file_sequence, timeline_files
from .jobs import ClipSpec
from .mapping import Placement

MATTE_OF = "mattebridge_matte_of"  # custom property on a matte strip: "<source strip name>/<object>"
MATTES = "mattebridge_mattes"  # custom property on a source strip: {object: matte strip name}
MODIFIER = "MatteBridge"


def top_strips(owner):
    """Strips directly in a sequence editor or meta strip (Blender 4.4+: `strips`; 4.2-4.3: `sequences`)."""
    return owner.strips if hasattr(owner, "strips") else owner.sequences


def all_strips(ed):
    """Every strip, meta contents included (4.4+: `strips_all`; 4.2-4.3: `sequences_all`)."""
    return ed.strips_all if hasattr(ed, "strips_all") else ed.sequences_all


def sequencer_scene(context):
    """The scene the Sequencer edits (5.0: `context.sequencer_scene`, which may differ from `context.scene`)."""
    return getattr(context, "sequencer_scene", None) or context.scene


@dataclass
class StripSource:
    scene_name: str
    strip_name: str
    files: FileSequence
    timing: StripTiming
    spec: ClipSpec
    shown: List[int]  # file frame at each visible timeline frame, in timeline order

    @property
    def first(self) -> int:
        return min(self.shown)

    @property
    def last(self) -> int:
        return max(self.shown)


def active_strip(scene):
    ed = scene.sequence_editor
    strip = ed.active_strip if ed else None
    if strip is None:
        raise PluginError("select an image strip in the Sequencer first")
    return strip


def describe(scene, strip) -> StripSource:
    """The strip as the server will read it; raises PluginError for strips MatteBridge cannot use."""
    if MATTE_OF in strip:
        raise PluginError(f"{strip.name!r} is a MatteBridge matte; select its source strip")
    if strip.type != "IMAGE":
        raise PluginError(
            f"{strip.name!r} is a {strip.type.lower()} strip: MatteBridge reads image-sequence "
            "strips (EXR, PNG, JPEG, TIFF, DPX)"
        )
    if len(getattr(strip, "retiming_keys", ())) > 0 or strip.strobe > 1.0:  # retiming_keys: 4.4+
        raise PluginError(f"{strip.name!r} is retimed or strobed: MatteBridge needs one file per timeline frame")
    directory = bpy.path.abspath(strip.directory, library=strip.id_data.library)
    if not os.path.isabs(directory):
        raise PluginError(f"{strip.name!r}: its folder {strip.directory!r} is relative; save the .blend first")
    files = file_sequence(os.path.normpath(directory), [e.filename for e in strip.elements])
    timing = StripTiming(
        frame_start=int(round(strip.frame_start)),
        final_start=int(strip.frame_final_start),
        final_end=int(strip.frame_final_end),
        elements=len(strip.elements),
        anim_offset_start=int(strip.animation_offset_start),
        anim_offset_end=int(strip.animation_offset_end),
        reverse=bool(strip.use_reverse_frames),
    )
    shown = timeline_files(timing, files)
    spec = ClipSpec(files.pattern, f"{min(shown)}-{max(shown)}", strip.colorspace_settings.name or None, ocio_config())
    return StripSource(scene.name, strip.name, files, timing, spec, shown)


def file_frame(source: StripSource, timeline_frame: int) -> int:
    element = source.timing.element_at(timeline_frame)
    if element is None:
        raise PluginError(f"frame {timeline_frame} is outside strip {source.strip_name!r}")
    return source.files.frames[element]


def ocio_config() -> Optional[str]:
    """The OCIO config Blender itself uses: $OCIO when set, else the one shipped in its datafiles."""
    env = os.environ.get("OCIO")
    if env:
        return env
    roots = [
        bpy.utils.system_resource("DATAFILES"),
        os.path.join(bpy.utils.resource_path("LOCAL"), "datafiles"),
        os.path.join(bpy.utils.resource_path("SYSTEM"), "datafiles"),
    ]
    for root in roots:
        path = os.path.join(root, "colormanagement", "config.ocio") if root else ""
        if path and os.path.isfile(path):
            return path
    return None


def placement(scene, strip, geometry: Optional[dict] = None) -> Placement:
    """Where the strip's image sits in the preview (mapping.Placement), with the plate's data-window offset
    when the server told us the geometry."""
    elem = strip.elements[0]
    w, h = float(elem.orig_width), float(elem.orig_height)
    if (w <= 0 or h <= 0) and geometry:
        w, h = float(geometry["data"][2]), float(geometry["data"][3])
    if w <= 0 or h <= 0:
        raise PluginError(f"{strip.name!r}: image size unknown yet (let the preview show it once)")
    offset = (0.0, 0.0)
    if geometry:
        data, display = geometry["data"], geometry["display"]
        offset = (float(data[0] - display[0]), float(data[1] - display[1]))
    t = strip.transform
    r = scene.render
    return Placement(
        w,
        h,
        t.scale_x,
        t.scale_y,
        t.offset_x,
        t.offset_y,
        t.rotation,
        tuple(t.origin),
        strip.use_flip_x,
        strip.use_flip_y,
        r.pixel_aspect_x / r.pixel_aspect_y,
        offset,
    )


# --- prompts on the strip ---------------------------------------------------------------------------
def load_prompts(strip):
    doc = strip.get(store.KEY)
    return store.to_prompts(doc.to_dict() if hasattr(doc, "to_dict") else doc)


def save_prompts(strip, prompts) -> None:
    strip[store.KEY] = store.to_store(store.prune(prompts))


# --- mattes -----------------------------------------------------------------------------------------
def matte_strip_for(scene, source_name: str, obj: str):
    """The matte strip made for `obj` of the source: as the source recorded it (survives renaming the
    source), else by the tag on the matte strip."""
    ed = scene.sequence_editor
    src = all_strips(ed).get(source_name)
    record = src.get(MATTES) if src is not None else None
    name = record.get(obj) if record is not None else None
    if name and name in all_strips(ed) and MATTE_OF in all_strips(ed)[name]:
        return all_strips(ed)[name]
    tag = f"{source_name}/{obj}"
    for s in all_strips(ed):
        if s.get(MATTE_OF) == tag:
            return s
    return None


def _free_channel(scene, start: int, end: int, lowest: int, ignore=()) -> int:
    busy = {
        s.channel
        for s in top_strips(scene.sequence_editor)
        if s.name not in ignore and s.frame_final_start < end and start < s.frame_final_end
    }
    channel = lowest
    while channel in busy:
        channel += 1
    return channel


def install_mattes(scene, source_name: str, paths_by_object: Dict[str, List[str]], mask_object: str) -> Dict[str, str]:
    """One image strip per object holding its matte files (timeline order), in the channels above the source,
    placed and transformed like it, colour space Non-Color, muted (it is a mask, not a layer to see); a
    MASK modifier on the source using `mask_object`'s matte. Re-running replaces the strips (modifiers of any
    strip that used an old matte strip are pointed at the new one). Returns object -> matte strip name."""
    ed = scene.sequence_editor
    src = all_strips(ed).get(source_name)
    if src is None:
        raise PluginError(f"strip {source_name!r} is gone")
    start, end = int(src.frame_final_start), int(src.frame_final_end)
    made: Dict[str, str] = {}
    channel = src.channel + 1
    for obj, paths in paths_by_object.items():
        if len(paths) != end - start:
            raise PluginError(f"object {obj!r}: {len(paths)} matte files for {end - start} frames")
        old = matte_strip_for(scene, source_name, obj)
        users = []
        old_channel = None
        if old is not None:
            users = [
                (s.name, m.name)
                for s in all_strips(ed)
                for m in s.modifiers
                if getattr(m, "input_mask_strip", None) == old
            ]
            old_channel = old.channel
            _remove(ed, old)
        channel = _free_channel(scene, start, end, old_channel if old_channel is not None else channel)
        name = f"{source_name}.{obj}.matte"
        directory = os.path.dirname(paths[0])
        strip = top_strips(ed).new_image(
            name=name, filepath=paths[0], channel=channel, frame_start=start, fit_method="ORIGINAL"
        )
        for p in paths[1:]:
            if os.path.dirname(p) != directory:
                raise PluginError(f"matte files of {obj!r} are not in one folder")
            strip.elements.append(os.path.basename(p))
        strip[MATTE_OF] = f"{source_name}/{obj}"
        strip.colorspace_settings.name = "Non-Color"
        strip.mute = True
        _copy_placement(src, strip)
        if strip.channel != channel or int(strip.frame_final_start) != start:
            strip.channel, strip.frame_start = channel, start
        for user_name, mod_name in users:
            user = all_strips(ed).get(user_name)
            if user is not None and mod_name in user.modifiers:
                user.modifiers[mod_name].input_mask_strip = strip
        made[obj] = strip.name
        channel += 1
    record = src.get(MATTES)
    record = record.to_dict() if hasattr(record, "to_dict") else dict(record or {})
    record.update(made)
    src[MATTES] = record
    if mask_object in made:
        mod = src.modifiers.get(MODIFIER)
        if mod is None or mod.type != "MASK":
            with bpy.context.temp_override(sequencer_scene=scene):  # modifiers.new needs it (crashes without, 5.0.1)
                mod = src.modifiers.new(MODIFIER, "MASK")
        mod.input_mask_type = "STRIP"
        mod.input_mask_strip = all_strips(ed)[made[mask_object]]
    return made


def _remove(ed, strip) -> None:
    if strip.name in top_strips(ed):
        top_strips(ed).remove(strip)
        return
    for meta in all_strips(ed):
        if meta.type == "META" and strip.name in top_strips(meta):
            top_strips(meta).remove(strip)
            return


def _copy_placement(src, dst) -> None:
    """The mask modifier reads the matte strip as rendered in the frame: it must sit exactly like the source."""
    for attr in ("scale_x", "scale_y", "offset_x", "offset_y", "rotation"):
        setattr(dst.transform, attr, getattr(src.transform, attr))
    dst.transform.origin = tuple(src.transform.origin)
    dst.transform.filter = src.transform.filter
    for attr in ("min_x", "max_x", "min_y", "max_y"):
        setattr(dst.crop, attr, getattr(src.crop, attr))
    dst.use_flip_x, dst.use_flip_y = src.use_flip_x, src.use_flip_y


def matte_paths(folder: str, name_pattern: str, objects, shown_frames: List[int]) -> Dict[str, List[str]]:
    from .frames import expand

    pattern = os.path.join(folder, name_pattern)
    return {obj: [expand(pattern.replace("{object}", obj), f) for f in shown_frames] for obj in objects}


def matte_folder(scene, prefs) -> str:
    """Absolute folder for mattes: the scene's setting, else the preference (`//` = next to the .blend)."""
    folder = scene.mattebridge.matte_folder or prefs.matte_folder or "//mattes/"
    if folder.startswith("//") and not bpy.data.filepath:
        raise PluginError(
            f"matte folder {folder!r} is relative to the .blend: save the .blend first, or set an absolute matte folder"
        )
    return os.path.normpath(bpy.path.abspath(folder))
