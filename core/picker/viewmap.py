"""Where the plate sits in the window: zoom, pan and pixel aspect, and the mapping both ways.

Image coordinates are docs/architecture.md §3 display-window pixels (continuous, origin top-left, y down). On screen
a pixel is `zoom * pixel_aspect` wide and `zoom` high, so an anamorphic plate looks right while the
coordinates handed to the server stay in plate pixels (pixel aspect is never baked into them).
Widget coordinates are continuous too: the mouse on widget pixel (i, j) is at (i + 0.5, j + 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

MIN_ZOOM = 1.0 / 64
MAX_ZOOM = 64.0


@dataclass
class ViewMap:
    width: int  # display window, plate pixels
    height: int
    pixel_aspect: float = 1.0
    zoom: float = 1.0  # screen pixels per plate pixel, vertically
    ox: float = 0.0  # widget position of the display window's top-left corner
    oy: float = 0.0

    @property
    def sx(self) -> float:
        return self.zoom * self.pixel_aspect

    @property
    def sy(self) -> float:
        return self.zoom

    def to_image(self, wx: float, wy: float) -> Tuple[float, float]:
        return (wx - self.ox) / self.sx, (wy - self.oy) / self.sy

    def to_widget(self, x: float, y: float) -> Tuple[float, float]:
        return self.ox + x * self.sx, self.oy + y * self.sy

    def image_rect(self) -> Tuple[float, float, float, float]:
        """x, y, width, height of the display window on screen."""
        return self.ox, self.oy, self.width * self.sx, self.height * self.sy

    def contains(self, x: float, y: float) -> bool:
        return 0.0 <= x <= self.width and 0.0 <= y <= self.height

    def fit(self, view_w: float, view_h: float, margin: float = 0.96) -> None:
        """Whole display window in view, centred."""
        zoom = min(view_w * margin / (self.width * self.pixel_aspect), view_h * margin / self.height)
        self.zoom = min(max(zoom, MIN_ZOOM), MAX_ZOOM)
        self.centre(view_w, view_h)

    def centre(self, view_w: float, view_h: float) -> None:
        self.ox = (view_w - self.width * self.sx) / 2.0
        self.oy = (view_h - self.height * self.sy) / 2.0

    def zoom_about(self, zoom: float, wx: float, wy: float) -> None:
        """Set the zoom keeping the plate point under widget point (wx, wy) where it is."""
        x, y = self.to_image(wx, wy)
        self.zoom = min(max(zoom, MIN_ZOOM), MAX_ZOOM)
        self.ox = wx - x * self.sx
        self.oy = wy - y * self.sy

    def pan(self, dx: float, dy: float) -> None:
        self.ox += dx
        self.oy += dy
