"""The frame bar under the plate: the clip's range, prompted frames (ticks in object colours), frames
the last track produced, and the current frame. Click or drag to scrub."""

from __future__ import annotations

from typing import Dict, Iterable, List, Set

from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget


class FrameBar(QWidget):
    frameRequested = Signal(int)

    def __init__(self, first: int, last: int, parent=None):
        super().__init__(parent)
        self.first, self.last, self.current = first, last, first
        self.prompted: Dict[int, List[QColor]] = {}
        self.tracked: Set[int] = set()
        self.setMinimumHeight(26)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self.setFocusPolicy(Qt.NoFocus)
        self.setToolTip("Click or drag to scrub; ticks are prompted frames, the grey band is tracked")

    def set_current(self, frame: int) -> None:
        self.current = frame
        self.update()

    def set_marks(self, prompted: Dict[int, List[QColor]], tracked: Iterable[int]) -> None:
        self.prompted = dict(prompted)
        self.tracked = set(tracked)
        self.update()

    def _x(self, frame: float) -> float:
        span = max(self.last - self.first + 1, 1)
        return 6 + (frame - self.first + 0.5) * (self.width() - 12) / span

    def frame_at(self, x: float) -> int:
        span = max(self.last - self.first + 1, 1)
        frame = self.first + int((x - 6) * span / max(self.width() - 12, 1))
        return min(max(frame, self.first), self.last)

    def mousePressEvent(self, event) -> None:
        if event.button() == Qt.LeftButton:
            self.frameRequested.emit(self.frame_at(event.position().x()))

    def mouseMoveEvent(self, event) -> None:
        if event.buttons() & Qt.LeftButton:
            self.frameRequested.emit(self.frame_at(event.position().x()))

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        h = self.height()
        p.fillRect(self.rect(), QColor(30, 30, 32))
        p.fillRect(QRectF(6, h / 2 - 2, self.width() - 12, 4), QColor(70, 70, 74))
        step = (self.width() - 12) / max(self.last - self.first + 1, 1)
        for frame in self.tracked:
            p.fillRect(QRectF(self._x(frame) - step / 2, h / 2 - 3, max(step, 1.0), 6), QColor(150, 150, 155))
        for frame, colours in self.prompted.items():
            x = self._x(frame)
            for i, colour in enumerate(colours[:4]):
                p.setPen(QPen(colour, 2))
                p.drawLine(int(x) + 2 * i, 3, int(x) + 2 * i, h - 3)
        x = self._x(self.current)
        p.setPen(QPen(QColor(255, 200, 40), 2))
        p.drawLine(int(x), 0, int(x), h)
        p.end()
