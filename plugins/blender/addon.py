"""Registration of everything Blender-facing (imported only inside Blender)."""

from __future__ import annotations

import bpy

from . import operators, overlay, props, tasks, ui
from .runtime import STATE

CLASSES = operators.CLASSES + ui.CLASSES


@bpy.app.handlers.persistent
def _file_loaded(*_args) -> None:
    """Preview mattes and plate geometry belong to the file they were made in."""
    STATE.previews.clear()
    STATE.geometry.clear()
    STATE.preview_serial.clear()


def register() -> None:
    props.register()
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    overlay.register()
    bpy.app.handlers.load_post.append(_file_loaded)


def unregister() -> None:
    if _file_loaded in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(_file_loaded)
    tasks.cancel_all()
    STATE.close()
    overlay.unregister()
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
    props.unregister()
