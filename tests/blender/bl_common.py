"""Helpers for the scripts tests/test_blender.py runs inside a real Blender (the `bpy` module in .venv-blender).

Each script is one Blender process: it takes a JSON file of arguments, installs the MatteBridge extension from
the built .zip the way Blender installs extensions (into the user repository under $BLENDER_USER_RESOURCES),
does its steps and writes what it saw to a JSON file; pytest makes the assertions.
"""

from __future__ import annotations

import json
import sys
import traceback

import bpy

MODULE = "bl_ext.user_default.mattebridge"


def args() -> dict:
    with open(sys.argv[-2], encoding="utf-8") as f:
        return json.load(f)


def finish(result: dict) -> None:
    with open(sys.argv[-1], "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1, default=str)


def install(zip_path: str) -> None:
    if MODULE not in bpy.context.preferences.addons:
        if MODULE.rsplit(".", 1)[1] in [p for p in _installed()]:
            bpy.ops.preferences.addon_enable(module=MODULE)
        else:
            bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
    assert MODULE in bpy.context.preferences.addons, "extension did not enable"


def _installed():
    import os

    repo = next(r for r in bpy.context.preferences.extensions.repos if r.module == "user_default")
    folder = repo.directory
    return os.listdir(folder) if os.path.isdir(folder) else []


def addon(name: str):
    """A module of the installed extension (e.g. "runtime")."""
    import importlib

    return importlib.import_module(f"{MODULE}.{name}")


def prefs():
    return bpy.context.preferences.addons[MODULE].preferences


def call(op, *args, **kwargs):
    """Run an operator as a script does: ("ok", result set) or ("error", the reported message).

    Blender turns an ERROR report of an operator called from Python into a RuntimeError("Error: ...");
    a Python exception escaping an operator shows as "Error: Python: Traceback ..." instead.
    """
    try:
        return "ok", sorted(op(*args, **kwargs))
    except RuntimeError as e:
        return "error", str(e)


def image_strip(scene, name, directory, first_file, frames, channel=2, frame_start=1, fit="FIT"):
    """An image-sequence strip of `frames` (file frame numbers) named like `first_file`."""
    import os
    import re

    ed = scene.sequence_editor or scene.sequence_editor_create()
    strip = top(ed).new_image(name, os.path.join(directory, first_file), channel, frame_start, fit_method=fit)
    m = re.match(r"^(.*?)(\d+)(\.\w+)$", first_file)
    for f in frames[1:]:
        strip.elements.append(f"{m.group(1)}{str(f).zfill(len(m.group(2)))}{m.group(3)}")
    return strip


def top(owner):
    """Top-level strips (Blender 4.4+ `strips`, 4.2-4.3 `sequences`: the scripts also run on 4.2 by hand)."""
    return owner.strips if hasattr(owner, "strips") else owner.sequences


def every(ed):
    return ed.strips_all if hasattr(ed, "strips_all") else ed.sequences_all


def color_strip(ed, name, channel, frame_start, length):
    try:  # 5.0: length=; 4.2: frame_end=
        return top(ed).new_effect(name, "COLOR", channel, frame_start, length=length)
    except TypeError:
        return top(ed).new_effect(name, "COLOR", channel, frame_start, frame_end=frame_start + length)


def run(main) -> None:
    """Run `main(args) -> dict`; an unexpected exception is reported in the result, with its traceback."""
    result = {}
    try:
        result = main(args()) or {}
    except Exception:
        result["script_error"] = traceback.format_exc()
    finish(result)
