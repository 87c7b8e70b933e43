"""Add-on preferences (server address, default matte folder) and per-scene settings."""

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, FloatVectorProperty, PointerProperty, StringProperty

from mattebridge.core.wire.vocabulary import DEFAULT_ADDRESS

ADDON = __package__  # bl_ext.<repo>.mattebridge once installed as an extension


class MatteBridgePreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON

    address: StringProperty(
        name="Server", default=DEFAULT_ADDRESS, description="Address of `mattebridge serve` (ZeroMQ endpoint)"
    )
    timeout: FloatProperty(
        name="Timeout",
        default=10.0,
        min=0.5,
        max=600.0,
        subtype="TIME_ABSOLUTE",
        description="Seconds to wait for the server before reporting it unreachable",
    )
    matte_folder: StringProperty(
        name="Matte Folder",
        default="//mattes/",
        subtype="DIR_PATH",
        description="Default folder for matte sequences (// = next to the .blend)",
    )

    def draw(self, context):
        col = self.layout.column()
        col.prop(self, "address")
        col.prop(self, "timeout")
        col.prop(self, "matte_folder")


class MatteBridgeSceneSettings(bpy.types.PropertyGroup):
    object: StringProperty(
        name="Object",
        default="main",
        description="Name of the object being prompted (one matte per object): 1-63 letters, digits, "
        "'_', '-' or '.', not starting with '.'",
    )
    direction: EnumProperty(
        name="Direction",
        default="BOTH",
        items=(
            ("FORWARD", "Forward", "Track from the first prompted frame to the strip's end"),
            ("BACKWARD", "Backward", "Track from the last prompted frame to the strip's start"),
            ("BOTH", "Both", "Track both ways from the first prompted frame"),
        ),
    )
    matte_folder: StringProperty(
        name="Matte Folder",
        default="",
        subtype="DIR_PATH",
        description="Folder for this scene's mattes; empty: the add-on preference",
    )
    show_overlay: BoolProperty(name="Show Matte", default=True, description="Overlay the preview matte")
    overlay_color: FloatVectorProperty(name="Tint", subtype="COLOR", size=3, min=0.0, max=1.0, default=(1.0, 0.35, 0.1))
    overlay_opacity: FloatProperty(name="Opacity", default=0.5, min=0.0, max=1.0, subtype="FACTOR")
    auto_preview: BoolProperty(
        name="Preview on Click",
        default=True,
        description="Ask the server for the matte after every click of the prompt tool",
    )


def preferences(context=None) -> MatteBridgePreferences:
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON)
    if addon is None:  # not registered as an add-on (e.g. imported directly): defaults
        return _Defaults()
    return addon.preferences


class _Defaults:
    address = DEFAULT_ADDRESS
    timeout = 10.0
    matte_folder = "//mattes/"


def settings(scene) -> MatteBridgeSceneSettings:
    return scene.mattebridge


CLASSES = (MatteBridgePreferences, MatteBridgeSceneSettings)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.mattebridge = PointerProperty(type=MatteBridgeSceneSettings)


def unregister():
    del bpy.types.Scene.mattebridge
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
