"""Registration of everything Blender-facing (imported only inside Blender)."""
from __future__ import annotations

import bpy

from . import operators, overlay, props, tasks, ui
from .runtime import STATE

CLASSES = operators.CLASSES + ui.CLASSES


def register() -> None:
    props.register()
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    overlay.register()


def unregister() -> None:
    tasks.cancel_all()
    STATE.close()
    overlay.unregister()
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
    props.unregister()
