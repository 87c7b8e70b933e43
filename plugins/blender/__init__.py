"""MatteBridge for Blender's Video Sequencer: SAM 2.1 mattes from a local `mattebridge serve`.

Blender-facing code is imported only by register(): the pure modules (frames, mapping, store, jobs) import
without bpy, so they are tested in plain Python (tests/test_blender.py).
"""


def register():
    from . import addon

    addon.register()


def unregister():
    from . import addon

    addon.unregister()
