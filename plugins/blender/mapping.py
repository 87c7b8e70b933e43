"""Where a strip's image sits in the Sequencer preview, and clicks back to plate pixels (no bpy here).

The preview's view space (``region.view2d.region_to_view``) is the scene's render frame in pixels, centred on
(0, 0), y up, x stretched by the scene's pixel aspect. An image strip of size (w, h) (Blender shows an EXR's data
window) is placed by its transform exactly as Blender's ``image_transform_quad_get`` does: centred, scaled
(the strip's *fit method* is baked into ``transform.scale`` when the strip is added), rotated about its origin,
offset, then mirrored by the strip's flips. The wire wants display-window pixels, origin top-left, y down,
continuous (docs/architecture.md §3): the data window's offset in the display window is added last.

Not modelled: crop (it hides pixels but does not move them, so clicks stay right; clicks on cropped-away pixels
are accepted), proxies (the view space does not change), retiming and strobe (refused elsewhere).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Tuple


@dataclass(frozen=True)
class Placement:
    image_w: float
    image_h: float
    scale_x: float = 1.0
    scale_y: float = 1.0
    offset_x: float = 0.0
    offset_y: float = 0.0
    rotation: float = 0.0  # radians, counter-clockwise
    origin: Tuple[float, float] = (0.5, 0.5)  # pivot, relative to the image, from its bottom-left
    flip_x: bool = False
    flip_y: bool = False
    pixel_aspect: float = 1.0  # scene render pixel aspect x / y
    data_offset: Tuple[float, float] = (0.0, 0.0)  # data window origin - display window origin (y down)

    def _pivot(self):
        return (self.origin[0] * self.image_w - self.image_w / 2, self.origin[1] * self.image_h - self.image_h / 2)

    def _post(self):
        return ((-1.0 if self.flip_x else 1.0) * self.pixel_aspect, -1.0 if self.flip_y else 1.0)

    def image_to_view(self, x: float, y: float) -> Tuple[float, float]:
        """Image pixel (Blender's image, origin top-left, y down) -> preview view coordinates."""
        lx, ly = x - self.image_w / 2, self.image_h / 2 - y
        px, py = self._pivot()
        sx, sy = (lx - px) * self.scale_x, (ly - py) * self.scale_y
        c, s = math.cos(self.rotation), math.sin(self.rotation)
        rx, ry = c * sx - s * sy, s * sx + c * sy
        mx, my = self._post()
        return (rx + px + self.offset_x) * mx, (ry + py + self.offset_y) * my

    def view_to_image(self, vx: float, vy: float) -> Tuple[float, float]:
        """Preview view coordinates -> image pixel (origin top-left, y down, continuous)."""
        if self.scale_x == 0 or self.scale_y == 0:
            raise ValueError("the strip is scaled to nothing")
        mx, my = self._post()
        px, py = self._pivot()
        rx, ry = vx / mx - px - self.offset_x, vy / my - py - self.offset_y
        c, s = math.cos(self.rotation), math.sin(self.rotation)
        sx, sy = c * rx + s * ry, -s * rx + c * ry
        lx, ly = sx / self.scale_x + px, sy / self.scale_y + py
        return lx + self.image_w / 2, self.image_h / 2 - ly

    # --- plate display-window pixels (the wire) ------------------------------------------------
    def view_to_plate(self, vx: float, vy: float) -> Tuple[float, float]:
        x, y = self.view_to_image(vx, vy)
        return x + self.data_offset[0], y + self.data_offset[1]

    def plate_to_view(self, x: float, y: float) -> Tuple[float, float]:
        return self.image_to_view(x - self.data_offset[0], y - self.data_offset[1])

    def contains_image(self, x: float, y: float) -> bool:
        return 0 <= x <= self.image_w and 0 <= y <= self.image_h

    def image_quad_view(self) -> List[Tuple[float, float]]:
        """The image's corners in view space: top-left, top-right, bottom-right, bottom-left."""
        w, h = self.image_w, self.image_h
        return [self.image_to_view(x, y) for x, y in ((0, 0), (w, 0), (w, h), (0, h))]


def fit_scale(method: str, image_w: float, image_h: float, render_w: float, render_h: float) -> Tuple[float, float]:
    """The scale Blender bakes into a new strip's transform for `fit_method` (FIT, FILL, STRETCH, ORIGINAL)."""
    if method == "FIT":
        s = min(render_w / image_w, render_h / image_h)
        return s, s
    if method == "FILL":
        s = max(render_w / image_w, render_h / image_h)
        return s, s
    if method == "STRETCH":
        return render_w / image_w, render_h / image_h
    return 1.0, 1.0


def gesture(place: Placement, view_start, view_end, dragged: bool, negative: bool):
    """A prompt-tool gesture in view coordinates -> ("point", x, y, positive) or ("box", x0, y0, x1, y1) in
    plate display-window pixels; None for a click outside the image. A drag is clipped to the image."""
    if not dragged:
        ix, iy = place.view_to_image(*view_start)
        if not place.contains_image(ix, iy):
            return None
        x, y = place.view_to_plate(*view_start)
        return ("point", x, y, not negative)
    (ax, ay), (bx, by) = place.view_to_image(*view_start), place.view_to_image(*view_end)
    x0, x1 = sorted((min(max(ax, 0.0), place.image_w), min(max(bx, 0.0), place.image_w)))
    y0, y1 = sorted((min(max(ay, 0.0), place.image_h), min(max(by, 0.0), place.image_h)))
    if x1 - x0 < 1 or y1 - y0 < 1:
        return None
    dx, dy = place.data_offset
    return ("box", x0 + dx, y0 + dy, x1 + dx, y1 + dy)
