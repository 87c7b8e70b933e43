"""Nuke's image space <-> the wire's (docs/architecture.md §3). Pure Python: no `nuke` import.

Nuke: origin at the bottom-left corner of the format, x right, y up, one unit per pixel; the pixel in
column i, row j covers [i, i+1] x [j, j+1] (its centre is i+.5, j+.5). The format is the display window,
the bbox (x, y, r, t; r and t exclusive) is the data window and may reach outside the format.

Wire: origin at the top-left corner of the display window, x right, y down, same units (the centre of
the top-left pixel is 0.5, 0.5). Data windows are OpenImageIO/EXR style (x, y, width, height) in absolute
pixels, y down, where the display window itself may start at (dx, dy).

Pixel aspect never enters these conversions: both spaces count image pixels (an anamorphic plate's
knob x is a pixel column, not a squeezed distance), and the aspect travels beside them, in the geometry
and the files' headers.

Format (display window) and bbox (data window): the plugin never moves pixels. The server reads frames
with their windows and writes mattes with the same windows, which Nuke places where the plate's pixels
are. The window conversions below let a Preview check that the frames the server sees have the bbox Nuke
shows for the node's input (within the one pixel of black border Nuke may add around a cropped EXR).

Proxy mode: knob values stay in full-size pixels in Nuke (it scales them when it renders a proxy), the
plate files and the wire are full size, so prompts need no proxy scaling. What Nuke reports about
images (a node's format and bbox) may be proxy-scaled, so nukehost reads the format and renders the
input with proxy mode off, and the internal Reads of full-size mattes are scaled by Nuke like any Read.
"""

from typing import Sequence, Tuple

Box = Tuple[float, float, float, float]
Window = Tuple[int, int, int, int]


def point_to_wire(x: float, y: float, display_height: float) -> Tuple[float, float]:
    """A Nuke position (full-size pixels, y up) -> the wire's (y down from the display window's top)."""
    return float(x), float(display_height) - float(y)


def point_from_wire(x: float, y: float, display_height: float) -> Tuple[float, float]:
    return float(x), float(display_height) - float(y)


def box_to_wire(box: Sequence[float], display_height: float) -> Box:
    """A Nuke box (x, y, r, t), y up -> the wire's [x0, y0, x1, y1], y down, x1 > x0 and y1 > y0.

    Corners dragged past each other in the Viewer (r < x or t < y) are put back in order.
    """
    x, y, r, t = (float(v) for v in box)
    x0, x1 = min(x, r), max(x, r)
    bottom, top = min(y, t), max(y, t)
    return x0, float(display_height) - top, x1, float(display_height) - bottom


def box_from_wire(box: Sequence[float], display_height: float) -> Box:
    x0, y0, x1, y1 = (float(v) for v in box)
    return x0, float(display_height) - y1, x1, float(display_height) - y0


def bbox_to_data_window(bbox: Sequence[int], display: Sequence[int]) -> Window:
    """Nuke's bbox (x, y, r, t) of an image whose format is the display window `display` (x, y, w, h as in
    the EXR header) -> the data window (x, y, width, height), absolute, y down."""
    x, y, r, t = (int(v) for v in bbox)
    dx, dy, _, dh = (int(v) for v in display)
    return dx + x, dy + dh - t, r - x, t - y


def data_window_to_bbox(data: Sequence[int], display: Sequence[int]) -> Window:
    """The data window (x, y, width, height) -> the bbox (x, y, r, t) Nuke shows for it."""
    x, y, w, h = (int(v) for v in data)
    dx, dy, _, dh = (int(v) for v in display)
    left, top = x - dx, dh - (y - dy)
    return left, top - h, left + w, top


def bboxes_agree(a: Sequence[int], b: Sequence[int], tolerance: int = 1) -> bool:
    """Two bboxes (x, y, r, t) equal up to `tolerance` pixels on each edge."""
    return all(abs(int(u) - int(v)) <= tolerance for u, v in zip(a, b))


def inside(x: float, y: float, width: float, height: float) -> bool:
    """On the image (edges included, as the server checks points)."""
    return 0.0 <= x <= width and 0.0 <= y <= height
