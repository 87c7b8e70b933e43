"""The plate view: the image through the OCIO view, the matte overlay, and the prompts you click.

Mouse (compositor conventions):
- left click: foreground point; right click or Shift+left click: background point
- left drag on empty plate: box; drag a point to move it; drag a box corner to reshape the box
- middle drag, Alt+left drag or Space+left drag: pan; wheel: zoom about the cursor
The canvas only reports edits (signals, in plate display-window pixels); the window applies them.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QImage, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from mattebridge.core.wire.prompts import FramePrompt

from .viewmap import ViewMap

HIT_RADIUS = 8.0  # screen pixels
DRAG_START = 4.0  # screen pixels a press must travel before it is a drag
POSITIVE = QColor(60, 210, 80)
NEGATIVE = QColor(235, 60, 60)


class PlateCanvas(QWidget):
    pointAdded = Signal(float, float, bool)  # x, y, positive
    pointMoved = Signal(int, float, float)  # index, x, y
    boxSet = Signal(float, float, float, float)  # x0, y0, x1, y1
    selectionChanged = Signal()
    cursorMoved = Signal(float, float)  # plate coordinates under the mouse
    viewChanged = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.StrongFocus)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.setMinimumSize(320, 200)
        self.view: Optional[ViewMap] = None
        self.image: Optional[QImage] = None
        self.overlay: Optional[QImage] = None
        self.overlay_visible = True
        self.editable = True
        self.message = ""
        self.prompts: List[Tuple[str, FramePrompt, QColor, bool]] = []  # (object, prompt, colour, active)
        self.selection: Optional[Tuple[str, int]] = None  # ("point", index) | ("box", -1) of the active object
        self.fitted = True  # follow the window size until the user zooms or pans
        self._drag = None  # what the mouse is doing: dict(kind=..., ...)
        self._space = False

    # --- what to show -------------------------------------------------------------------------------
    def set_plate(self, image: Optional[QImage], width: int, height: int, pixel_aspect: float) -> None:
        """A frame's preview image standing for a `width` x `height` display window."""
        self.image = image
        if self.view is None or (self.view.width, self.view.height, self.view.pixel_aspect) != (
            width,
            height,
            pixel_aspect,
        ):
            self.view = ViewMap(width, height, pixel_aspect)
            self.fit()
        self.update()

    def set_overlay(self, overlay: Optional[QImage]) -> None:
        self.overlay = overlay
        self.update()

    def set_prompts(self, prompts) -> None:
        self.prompts = list(prompts)
        active = self.active_prompt()
        if self.selection is not None:
            kind, index = self.selection
            if (
                active is None
                or (kind == "point" and index >= len(active.points))
                or (kind == "box" and active.box is None)
            ):
                self.selection = None
                self.selectionChanged.emit()
        self.update()

    def set_message(self, text: str) -> None:
        self.message = text
        self.update()

    def active_prompt(self) -> Optional[FramePrompt]:
        for _obj, fp, _colour, active in self.prompts:
            if active:
                return fp
        return None

    def select(self, selection) -> None:
        self.selection = selection
        self.selectionChanged.emit()
        self.update()

    # --- zoom and pan ----------------------------------------------------------------------------
    def fit(self) -> None:
        if self.view is not None:
            self.view.fit(self.width(), self.height())
            self.fitted = True
            self.viewChanged.emit()
            self.update()

    def set_zoom(self, zoom: float, at: Optional[Tuple[float, float]] = None) -> None:
        if self.view is None:
            return
        wx, wy = at if at is not None else (self.width() / 2.0, self.height() / 2.0)
        self.view.zoom_about(zoom, wx, wy)
        self.fitted = False
        self.viewChanged.emit()
        self.update()

    def zoom_by(self, factor: float, at: Optional[Tuple[float, float]] = None) -> None:
        if self.view is not None:
            self.set_zoom(self.view.zoom * factor, at)

    def resizeEvent(self, event) -> None:
        if self.view is not None:
            if self.fitted:
                self.view.fit(self.width(), self.height())
            else:  # keep the plate point at the centre where it was
                old = event.oldSize()
                if old.width() > 0:
                    self.view.pan((self.width() - old.width()) / 2.0, (self.height() - old.height()) / 2.0)
            self.viewChanged.emit()
        super().resizeEvent(event)

    # --- mouse ---------------------------------------------------------------------------------------
    @staticmethod
    def _at(event) -> Tuple[float, float]:
        """Continuous widget position of the pixel under the mouse (its centre)."""
        p = event.position()
        return p.x() + 0.5, p.y() + 0.5

    def _hit(self, wx: float, wy: float):
        """The active object's point or box corner under widget (wx, wy)."""
        fp = self.active_prompt()
        if fp is None or self.view is None:
            return None
        best, best_d = None, HIT_RADIUS
        for i, p in enumerate(fp.points):
            px, py = self.view.to_widget(p.x, p.y)
            d = ((px - wx) ** 2 + (py - wy) ** 2) ** 0.5
            if d <= best_d:
                best, best_d = ("point", i), d
        if best is None and fp.box is not None:
            x0, y0, x1, y1 = fp.box
            for corner, (cx, cy) in enumerate(((x0, y0), (x1, y0), (x1, y1), (x0, y1))):
                px, py = self.view.to_widget(cx, cy)
                d = ((px - wx) ** 2 + (py - wy) ** 2) ** 0.5
                if d <= best_d:
                    best, best_d = ("corner", corner), d
        return best

    def mousePressEvent(self, event) -> None:
        self.setFocus()
        if self.view is None:
            return
        wx, wy = self._at(event)
        button, mods = event.button(), event.modifiers()
        if button == Qt.MiddleButton or (button == Qt.LeftButton and (mods & Qt.AltModifier or self._space)):
            self._drag = {"kind": "pan", "last": (wx, wy)}
            self.setCursor(Qt.ClosedHandCursor)
            return
        if button not in (Qt.LeftButton, Qt.RightButton) or not self.editable:
            return
        hit = self._hit(wx, wy)
        if hit is not None and hit[0] == "point":
            self.select(("point", hit[1]))
            if button == Qt.LeftButton:
                self._drag = {"kind": "point", "index": hit[1], "start": (wx, wy), "moved": False, "now": (wx, wy)}
            return
        if hit is not None and hit[0] == "corner" and button == Qt.LeftButton:
            self.select(("box", -1))
            self._drag = {"kind": "corner", "corner": hit[1], "start": (wx, wy), "now": (wx, wy), "moved": False}
            return
        positive = button == Qt.LeftButton and not (mods & Qt.ShiftModifier)
        self._drag = {
            "kind": "press",
            "start": (wx, wy),
            "now": (wx, wy),
            "positive": positive,
            "button": button,
            "moved": False,
        }

    def mouseMoveEvent(self, event) -> None:
        if self.view is None:
            return
        wx, wy = self._at(event)
        self.cursorMoved.emit(*self.view.to_image(wx, wy))
        drag = self._drag
        if drag is None:
            return
        if drag["kind"] == "pan":
            lx, ly = drag["last"]
            self.view.pan(wx - lx, wy - ly)
            drag["last"] = (wx, wy)
            self.fitted = False
            self.viewChanged.emit()
        else:
            sx, sy = drag["start"]
            if abs(wx - sx) + abs(wy - sy) >= DRAG_START:
                drag["moved"] = True
            drag["now"] = (wx, wy)
        self.update()

    def mouseReleaseEvent(self, event) -> None:
        drag, self._drag = self._drag, None
        self.unsetCursor()
        if drag is None or self.view is None or drag["kind"] == "pan":
            return
        wx, wy = self._at(event)
        x, y = self._clamp(*self.view.to_image(wx, wy))
        if drag["kind"] == "point":
            if drag["moved"]:
                self.pointMoved.emit(drag["index"], x, y)
        elif drag["kind"] == "corner":
            fp = self.active_prompt()
            if drag["moved"] and fp is not None and fp.box is not None:
                x0, y0, x1, y1 = fp.box
                corner = drag["corner"]
                x0, x1 = (x, x1) if corner in (0, 3) else (x0, x)
                y0, y1 = (y, y1) if corner in (0, 1) else (y0, y)
                if x0 != x1 and y0 != y1:
                    self.boxSet.emit(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
        elif drag["moved"] and drag["button"] == Qt.LeftButton:
            sx, sy = self._clamp(*self.view.to_image(*drag["start"]))
            if sx != x and sy != y:
                self.select(("box", -1))
                self.boxSet.emit(min(sx, x), min(sy, y), max(sx, x), max(sy, y))
        elif not drag["moved"]:
            px, py = self.view.to_image(*drag["start"])
            if self.view.contains(px, py):
                self.pointAdded.emit(px, py, drag["positive"])
        self.update()

    def _clamp(self, x: float, y: float) -> Tuple[float, float]:
        return min(max(x, 0.0), float(self.view.width)), min(max(y, 0.0), float(self.view.height))

    def wheelEvent(self, event) -> None:
        steps = event.angleDelta().y() / 120.0
        if steps and self.view is not None:
            p = event.position()
            self.zoom_by(1.25**steps, (p.x() + 0.5, p.y() + 0.5))

    def keyPressEvent(self, event) -> None:
        if event.key() == Qt.Key_Space and not event.isAutoRepeat():
            self._space = True
        super().keyPressEvent(event)

    def keyReleaseEvent(self, event) -> None:
        if event.key() == Qt.Key_Space and not event.isAutoRepeat():
            self._space = False
        super().keyReleaseEvent(event)

    def leaveEvent(self, event) -> None:
        self._space = False
        super().leaveEvent(event)

    # --- drawing ---------------------------------------------------------------------------------------
    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(38, 38, 40))
        view = self.view
        if view is not None:
            x, y, w, h = view.image_rect()
            target = QRectF(x, y, w, h)
            if self.image is not None:
                painter.setRenderHint(QPainter.SmoothPixmapTransform, w < self.image.width())
                painter.drawImage(target, self.image)
            else:
                painter.fillRect(target, QColor(20, 20, 20))
            if self.overlay is not None and self.overlay_visible:
                painter.setRenderHint(QPainter.SmoothPixmapTransform, True)
                painter.drawImage(target, self.overlay)
            painter.setPen(QPen(QColor(90, 90, 90), 1))
            painter.setBrush(Qt.NoBrush)
            painter.drawRect(target)
            painter.setRenderHint(QPainter.Antialiasing, True)
            for obj, fp, colour, active in sorted(self.prompts, key=lambda item: item[3]):
                self._draw_prompt(painter, fp, colour, active)
            self._draw_drag(painter)
        if self.message:
            painter.setPen(QColor(240, 240, 240))
            font = QFont(painter.font())
            font.setPointSizeF(max(font.pointSizeF(), 11.0))
            painter.setFont(font)
            box = self.rect().adjusted(24, 24, -24, -24)
            painter.fillRect(
                box.adjusted(0, box.height() // 2 - 60, 0, -(box.height() // 2 - 60)), QColor(0, 0, 0, 170)
            )
            painter.drawText(box, Qt.AlignCenter | Qt.TextWordWrap, self.message)
        painter.end()

    def _draw_prompt(self, painter: QPainter, fp: FramePrompt, colour: QColor, active: bool) -> None:
        view = self.view
        edge = QColor(colour)
        if not active:
            edge.setAlpha(140)
        if fp.box is not None:
            x0, y0, x1, y1 = fp.box
            selected = active and self.selection == ("box", -1)
            pen = QPen(edge, 2.5 if selected else (2.0 if active else 1.0))
            if not active:
                pen.setStyle(Qt.DashLine)
            painter.setPen(pen)
            painter.setBrush(Qt.NoBrush)
            (ax, ay), (bx, by) = view.to_widget(x0, y0), view.to_widget(x1, y1)
            painter.drawRect(QRectF(ax, ay, bx - ax, by - ay))
            if active:
                painter.setBrush(QBrush(edge))
                for cx, cy in ((ax, ay), (bx, ay), (bx, by), (ax, by)):
                    painter.drawRect(QRectF(cx - 3.5, cy - 3.5, 7, 7))
        if fp.mask is not None:
            painter.setPen(edge)
            painter.drawText(QPointF(view.ox + 6, view.oy + 16), f"mask prompt: {fp.mask}")
        for i, p in enumerate(fp.points):
            cx, cy = view.to_widget(p.x, p.y)
            radius = 6.0 if active else 4.0
            fill = QColor(POSITIVE if p.positive else NEGATIVE)
            if not active:
                fill.setAlpha(150)
            selected = active and self.selection == ("point", i)
            painter.setPen(QPen(QColor(255, 255, 255) if selected else edge, 3.0 if selected else 2.0))
            painter.setBrush(QBrush(fill))
            painter.drawEllipse(QPointF(cx, cy), radius, radius)
            if not p.positive:  # a minus sign, readable without colour
                painter.setPen(QPen(QColor(255, 255, 255), 1.5))
                painter.drawLine(QPointF(cx - 3, cy), QPointF(cx + 3, cy))

    def _draw_drag(self, painter: QPainter) -> None:
        drag = self._drag
        if not drag or not drag.get("moved"):
            return
        view = self.view
        painter.setPen(QPen(QColor(255, 255, 255), 1.0, Qt.DashLine))
        painter.setBrush(Qt.NoBrush)
        if drag["kind"] == "press" and drag["button"] == Qt.LeftButton:
            (sx, sy), (nx, ny) = drag["start"], drag["now"]
            painter.drawRect(QRectF(min(sx, nx), min(sy, ny), abs(nx - sx), abs(ny - sy)))
        elif drag["kind"] == "point":
            nx, ny = drag["now"]
            painter.drawEllipse(QPointF(nx, ny), 6.0, 6.0)
        elif drag["kind"] == "corner":
            fp = self.active_prompt()
            if fp is not None and fp.box is not None:
                x0, y0, x1, y1 = fp.box
                corners = [
                    view.to_widget(x0, y0),
                    view.to_widget(x1, y0),
                    view.to_widget(x1, y1),
                    view.to_widget(x0, y1),
                ]
                nx, ny = drag["now"]
                ox, oy = corners[(drag["corner"] + 2) % 4]
                painter.drawRect(QRectF(min(ox, nx), min(oy, ny), abs(nx - ox), abs(ny - oy)))
