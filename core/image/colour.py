"""Colour management with OpenColorIO: what the model sees is the plate through a display/view."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import numpy as np

from mattebridge.core.errors import FieldError, MatteBridgeError

BUILTIN_CONFIG = "ocio://studio-config-latest"
# Names an 8-bit file without colour metadata is tried as, in order (OIIO's interop id first).
SRGB_NAMES = ("srgb_rec709_scene", "sRGB - Texture", "srgb_tx", "sRGB", "srgb_texture")


def load_config(source: Optional[str] = None):
    """`--ocio` (path or ocio:// URI), else $OCIO, else the built-in studio config."""
    import PyOpenColorIO as ocio

    source = source or os.environ.get("OCIO") or BUILTIN_CONFIG
    try:
        return ocio.Config.CreateFromFile(source), source
    except Exception as e:  # OCIO raises its own Exception type with a useful message
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise MatteBridgeError(f"OCIO config {source}: cannot load ({first})") from None


def config_files(config) -> list:
    """Every file the config's transforms reference, as OCIO resolves it (search paths, context variables);
    files that do not exist are left out (OCIO cannot read them either)."""
    import PyOpenColorIO as ocio

    def walk(transform):
        if transform is None:
            return
        if isinstance(transform, ocio.GroupTransform):
            for t in transform:
                yield from walk(t)
        elif isinstance(transform, ocio.FileTransform):
            yield transform.getSrc()

    transforms = []
    for cs in config.getColorSpaces():
        transforms += [
            cs.getTransform(ocio.COLORSPACE_DIR_TO_REFERENCE),
            cs.getTransform(ocio.COLORSPACE_DIR_FROM_REFERENCE),
        ]
    for look in config.getLooks():
        transforms += [look.getTransform(), look.getInverseTransform()]
    for vt in config.getViewTransforms():
        transforms += [
            vt.getTransform(ocio.VIEWTRANSFORM_DIR_TO_REFERENCE),
            vt.getTransform(ocio.VIEWTRANSFORM_DIR_FROM_REFERENCE),
        ]
    for nt in config.getNamedTransforms():
        transforms += [nt.getTransform(ocio.TRANSFORM_DIR_FORWARD), nt.getTransform(ocio.TRANSFORM_DIR_INVERSE)]
    context, files = config.getCurrentContext(), set()
    for src in {s for t in transforms for s in walk(t)}:
        try:
            files.add(context.resolveFileLocation(src))
        except Exception:  # not found anywhere on the search path
            pass
    return sorted(files)


def _names(config) -> list:
    return [cs.getName() for cs in config.getColorSpaces()]


def resolve_colorspace(config, explicit: Optional[str], file_colorspace: str, is_float: bool, source: str) -> str:
    """--colorspace, else the file's metadata (if the config knows it), else scene_linear / sRGB by bit depth."""
    if explicit:
        cs = config.getColorSpace(explicit)
        if cs is None:
            raise FieldError(
                "colorspace",
                f" {explicit!r} is not in the OCIO config {source}; colour spaces: {', '.join(_names(config))}",
            )
        return cs.getName()
    if file_colorspace and config.getColorSpace(file_colorspace) is not None:
        return config.getColorSpace(file_colorspace).getName()
    candidates = ("scene_linear",) if is_float else SRGB_NAMES + ("texture_paint",)
    for name in candidates:
        cs = config.getColorSpace(name)
        if cs is not None:
            return cs.getName()
    kind = "a scene_linear role" if is_float else "an sRGB colour space"
    raise MatteBridgeError(
        f"OCIO config {source} has no {kind}; give the plate's colour space (--colorspace; on the wire: colorspace)"
    )


def resolve_view(config, view: Optional[str], source: str):
    """`DISPLAY/VIEW`, else the config's default display and its default view."""
    displays = list(config.getDisplays())
    if not view:
        display = config.getDefaultDisplay()
        return display, config.getDefaultView(display)
    display, sep, name = view.partition("/")
    if not sep:
        raise FieldError(
            "view", f' {view!r}: expected "DISPLAY/VIEW", e.g. "{displays[0]}/{config.getDefaultView(displays[0])}"'
        )
    if display not in displays:
        raise FieldError("view", f": display {display!r} is not in {source}; displays: {', '.join(displays)}")
    views = list(config.getViews(display))
    if name not in views:
        raise FieldError("view", f": view {name!r} is not on display {display!r}; views: {', '.join(views)}")
    return display, name


@dataclass
class DisplayTransform:
    """Input colour space -> display/view: `apply` on packed float RGB through OCIO's CPU processor (the
    reference), `apply_tensor` on a torch tensor on its device (the model's input, CPU or GPU) through the same
    processor baked into LUTs."""

    config_source: str
    colorspace: str
    display: str
    view: str

    def __post_init__(self):
        import PyOpenColorIO as ocio

        config, _ = load_config(self.config_source)
        transform = ocio.DisplayViewTransform(src=self.colorspace, display=self.display, view=self.view)
        try:
            processor = config.getProcessor(transform)
        except Exception as e:
            raise MatteBridgeError(
                f"OCIO: cannot build {self.colorspace} -> {self.display}/{self.view} ({e})"
            ) from None
        self.processor = processor
        self._cpu = processor.getDefaultCPUProcessor()

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        out = np.ascontiguousarray(rgb, dtype=np.float32).copy()
        self._cpu.applyRGB(out)
        return out

    def apply_tensor(self, rgb):
        """(..., 3) float32 tensor -> the display/view on the tensor's device, unclipped, through the processor
        baked into LUTs (core/image/lut.py states their tolerance against `apply`): the model's input, on a GPU
        and on the CPU alike (at 1024² on one core: ~0.045 s against OCIO's ~0.40 s for the whole processor,
        measured). What a person sees (the picker, cut-outs) goes through `apply`, exact."""
        from mattebridge.core.image.lut import baked

        return baked(self.processor).apply(rgb)

    def describe(self) -> dict:
        return {"config": self.config_source, "colorspace": self.colorspace, "display": self.display, "view": self.view}
