"""The prompt window: a client of `mattebridge serve` for placing clicks and boxes and tracking them.

Every edit goes to the server at once (`Clip.prompt` on a worker thread) and its matte comes back as an
overlay; Track runs the propagation with progress and Cancel. The prompts are the JSON file shared with
`mattebridge track --prompts` (docs/prompts.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction, QColor, QIcon, QImage, QKeySequence, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from mattebridge.core.errors import MatteBridgeError
from mattebridge.core.image.resample import area_resize
from mattebridge.core.wire.sequence import FrameRange, has_frame_token
from mattebridge.core.wire.vocabulary import DIRECTIONS

from . import EXIT_CLOSED, EXIT_DONE, EXIT_SERVER, EXIT_USAGE
from .canvas import PlateCanvas
from .document import PromptDocument, wire_prompt
from .framebar import FrameBar
from .plates import PlateSource, preview_shape
from .workers import PlateLoader, ServerWorker

PALETTE = [
    (255, 170, 0),
    (0, 190, 255),
    (255, 80, 200),
    (120, 230, 90),
    (180, 120, 255),
    (255, 235, 80),
    (80, 240, 210),
    (255, 110, 90),
]
OVERLAY_OPACITY = 0.55  # the active object's matte; others a little fainter

HELP = """<b>Mouse</b><br>
click: foreground point<br>
right click / Shift+click: background point<br>
drag: box &nbsp; drag a point or corner: move it<br>
middle / Alt / Space drag: pan &nbsp; wheel: zoom<br>
<b>Keys</b><br>
Ctrl+Z / Ctrl+Shift+Z: undo / redo<br>
Delete: delete the selected point or box<br>
T: flip the selected point fg/bg<br>
&larr; &rarr;: previous / next frame (Shift: 10)<br>
Home / End: first / last frame<br>
O: matte overlay on/off<br>
F: fit &nbsp; 1: 100% &nbsp; + / -: zoom<br>
N: new object &nbsp; F2: rename &nbsp; [ ]: switch<br>
Ctrl+Enter: track &nbsp; Esc: cancel<br>
Ctrl+S: save prompts &nbsp; Ctrl+O: load"""


@dataclass
class PickOptions:
    plate: str
    frames: FrameRange
    frame: int
    server: str
    timeout: float
    prompts: Optional[str]  # loaded at start
    save: Optional[str]  # where the prompts JSON goes
    out: str  # matte pattern
    channels: str = "A"
    direction: str = "both"
    edge: str = "soft"
    layer: Optional[str] = None
    colorspace: Optional[str] = None
    ocio: Optional[str] = None
    view: Optional[str] = None
    preview_size: int = 2048
    on_done: str = "stay"  # stay | exit
    auto_track: bool = False
    title: Optional[str] = None


class PickerWindow(QMainWindow):
    def __init__(self, options: PickOptions, source: PlateSource, document: PromptDocument):
        super().__init__()
        self.options, self.source, self.doc = options, source, document
        self.frames = options.frames
        self.frame = options.frame
        self.active: Optional[str] = document.objects[0] if document.objects else None
        self.revision: Dict[tuple, int] = {}  # (frame, object) -> the latest edit sent
        self.answered: Dict[tuple, int] = {}  # (frame, object) -> the latest edit the server answered
        self.mattes: Dict[int, Dict[str, np.ndarray]] = {}  # interactive mattes (uint8 previews)
        self.tracked: Dict[int, Dict[str, np.ndarray]] = {}  # the last track's mattes
        self.tracked_stale = False
        self.colours: Dict[str, QColor] = {}
        self.connected = False
        self.tracking = False
        self.closing = False
        self.exit_code = EXIT_CLOSED
        self.result = {
            "status": "closed",
            "message": "",
            "plate": options.plate,
            "frames": [self.frames.first, self.frames.last],
            "frame": self.frame,
            "out": options.out,
            "channels": options.channels,
            "objects": [],
            "mattes": {},
            "prompts": options.save,
            "summary": {},
        }
        self.shown_frame: Optional[int] = None

        self._build()
        self.worker = ServerWorker(
            options.server,
            options.timeout,
            {
                "pattern": options.plate,
                "frames": str(self.frames),
                "layer": options.layer,
                "colorspace": options.colorspace,
                "ocio": options.ocio,
                "view": options.view,
            },
            source.geometry,
            options.preview_size,
            options.edge,
        )
        self.worker.connected.connect(self._on_connected)
        self.worker.connectFailed.connect(self._on_connect_failed)
        self.worker.matteReady.connect(self._on_matte)
        self.worker.promptFailed.connect(self._on_prompt_failed)
        self.worker.trackProgress.connect(self._on_track_progress)
        self.worker.trackFinished.connect(self._on_track_finished)
        self.worker.lost.connect(self._on_lost)
        self.worker.error.connect(lambda message: self.statusBar().showMessage(message, 10000))
        self.loader = PlateLoader(source)
        self.loader.loaded.connect(self._on_plate)
        self.loader.failed.connect(self._on_plate_failed)

        geometry = source.geometry(self.frame)
        self.canvas.set_plate(None, *geometry.display_size, geometry.pixel_aspect)
        self.set_frame(self.frame, force=True)
        self._refresh_objects()
        self.canvas.set_message(f"connecting to {options.server} ...")
        self.worker.connect_server()

    # --- layout ----------------------------------------------------------------------------------------
    def _build(self) -> None:
        o = self.options
        name = o.title or os.path.basename(o.plate)
        self.setWindowTitle(f"MatteBridge — {name}[*]")
        self.resize(1280, 800)
        self.canvas = PlateCanvas()
        self.canvas.pointAdded.connect(self._on_point_added)
        self.canvas.pointMoved.connect(self._on_point_moved)
        self.canvas.boxSet.connect(self._on_box_set)
        self.canvas.cursorMoved.connect(self._on_cursor)
        self.canvas.viewChanged.connect(self._on_view_changed)

        self.framebar = FrameBar(self.frames.first, self.frames.last)
        self.framebar.frameRequested.connect(self.set_frame)
        self.frame_spin = QSpinBox()
        self.frame_spin.setRange(self.frames.first, self.frames.last)
        self.frame_spin.setKeyboardTracking(False)
        self.frame_spin.valueChanged.connect(self.set_frame)
        self.frame_spin.setToolTip("Frame (plate frame number)")
        prev_button, next_button = QPushButton("◀"), QPushButton("▶")
        prev_button.clicked.connect(lambda: self.step(-1))
        next_button.clicked.connect(lambda: self.step(1))
        self.direction = QComboBox()
        self.direction.addItems(sorted(DIRECTIONS, key=lambda d: d != "both"))  # both first: the default
        self.direction.setCurrentText(o.direction)
        self.direction.setToolTip("Propagation direction from each object's first prompted frame")
        self.out_edit = QLineEdit(o.out)
        self.out_edit.setToolTip("Matte files: {object} is the object name, #### the frame number")
        self.track_button = QPushButton("Track")
        self.track_button.setToolTip("Track every object through the clip (Ctrl+Enter)")
        self.track_button.clicked.connect(self.start_track)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.setToolTip("Stop tracking (Esc); frames already written stay complete")
        self.cancel_button.clicked.connect(self.cancel_track)
        self.progress = QProgressBar()
        self.progress.setRange(0, max(len(self.frames), 1))
        self.progress.setValue(0)
        self.progress.setFormat("%v / %m frames")
        for w in (prev_button, next_button, self.track_button, self.cancel_button, self.direction):
            w.setFocusPolicy(Qt.NoFocus)
        for w in (prev_button, next_button):
            w.setMaximumWidth(36)
        self.frame_spin.setFocusPolicy(Qt.ClickFocus)
        self.out_edit.setFocusPolicy(Qt.ClickFocus)

        row = QHBoxLayout()
        row.addWidget(prev_button)
        row.addWidget(self.frame_spin)
        row.addWidget(next_button)
        row.addWidget(QLabel(f"{self.frames.first}–{self.frames.last}"))
        row.addSpacing(12)
        row.addWidget(QLabel("Direction"))
        row.addWidget(self.direction)
        row.addStretch(1)
        row.addWidget(self.track_button)
        row.addWidget(self.cancel_button)
        row.addWidget(self.progress)
        central = QWidget()
        column = QVBoxLayout(central)
        column.setContentsMargins(4, 4, 4, 4)
        column.addWidget(self.canvas, 1)
        column.addWidget(self.framebar)
        column.addLayout(row)
        out_row = QHBoxLayout()
        out_row.addWidget(QLabel("Out"))
        out_row.addWidget(self.out_edit, 1)
        column.addLayout(out_row)
        self.setCentralWidget(central)

        side = QWidget()
        side_layout = QVBoxLayout(side)
        self.object_list = QListWidget()
        self.object_list.setFocusPolicy(Qt.ClickFocus)
        self.object_list.currentRowChanged.connect(self._on_object_row)
        self.object_list.itemChanged.connect(self._on_object_renamed)
        side_layout.addWidget(self.object_list)
        buttons = QHBoxLayout()
        for text, slot, tip in (
            ("Add", self.add_object, "New object (N)"),
            ("Rename", self.rename_object, "Rename the object (F2)"),
            ("Remove", self.remove_object, "Remove the object and its prompts"),
        ):
            b = QPushButton(text)
            b.setFocusPolicy(Qt.NoFocus)
            b.setToolTip(tip)
            b.clicked.connect(slot)
            buttons.addWidget(b)
        side_layout.addLayout(buttons)
        help_label = QLabel(HELP)
        help_label.setWordWrap(True)
        help_label.setTextFormat(Qt.RichText)
        side_layout.addWidget(help_label)
        side_layout.addStretch(1)
        dock = QDockWidget("Objects", self)
        dock.setObjectName("objects")
        dock.setFeatures(QDockWidget.DockWidgetMovable | QDockWidget.DockWidgetFloatable)
        dock.setWidget(side)
        self.addDockWidget(Qt.RightDockWidgetArea, dock)

        self.coords = QLabel("")
        self.zoom_label = QLabel("")
        self.statusBar().addPermanentWidget(self.coords)
        self.statusBar().addPermanentWidget(self.zoom_label)
        self._build_actions()

    def _action(self, text: str, keys, slot, checkable: bool = False, toolbar: Optional[QToolBar] = None) -> QAction:
        action = QAction(text, self)
        if keys:
            sequences = {}
            for k in keys if isinstance(keys, (list, tuple)) else [keys]:
                bound = QKeySequence.keyBindings(k) if isinstance(k, QKeySequence.StandardKey) else [QKeySequence(k)]
                for seq in bound:  # a standard key may already include an extra binding: list each once
                    sequences.setdefault(seq.toString(), seq)
            action.setShortcuts(list(sequences.values()))
            action.setShortcutContext(Qt.WindowShortcut)
        action.setCheckable(checkable)
        (action.toggled if checkable else action.triggered).connect(slot)
        self.addAction(action)
        if toolbar is not None:
            toolbar.addAction(action)
        return action

    def _build_actions(self) -> None:
        bar = self.addToolBar("Main")
        bar.setObjectName("main")
        bar.setFocusPolicy(Qt.NoFocus)
        A = self._action
        self.act_open = A("Load prompts…", QKeySequence.Open, self.load_prompts, toolbar=bar)
        self.act_save = A("Save prompts", QKeySequence.Save, self.save_prompts, toolbar=bar)
        self.act_save_as = A("Save prompts as…", "Ctrl+Shift+S", self.save_prompts_as)
        bar.addSeparator()
        self.act_undo = A("Undo", QKeySequence.Undo, self.undo, toolbar=bar)
        self.act_redo = A("Redo", [QKeySequence.Redo, "Ctrl+Y", "Ctrl+Shift+Z"], self.redo, toolbar=bar)
        self.act_delete = A("Delete", [QKeySequence.Delete, "Backspace"], self.delete_selection)
        self.act_flip = A("Flip point fg/bg", "T", self.flip_selection)
        bar.addSeparator()
        self.act_overlay = A("Overlay", "O", self.set_overlay_visible, checkable=True, toolbar=bar)
        self.act_overlay.setChecked(True)
        self.act_fit = A("Fit", "F", self.canvas.fit, toolbar=bar)
        self.act_100 = A("100%", "1", lambda: self.canvas.set_zoom(1.0), toolbar=bar)
        A("Zoom in", ["+", "=", "Ctrl++"], lambda: self.canvas.zoom_by(1.25))
        A("Zoom out", ["-", "Ctrl+-"], lambda: self.canvas.zoom_by(0.8))
        A("Next frame", "Right", lambda: self.step(1))
        A("Previous frame", "Left", lambda: self.step(-1))
        A("Forward 10 frames", "Shift+Right", lambda: self.step(10))
        A("Back 10 frames", "Shift+Left", lambda: self.step(-10))
        A("First frame", "Home", lambda: self.set_frame(self.frames.first))
        A("Last frame", "End", lambda: self.set_frame(self.frames.last))
        A("New object", "N", self.add_object)
        A("Rename object", "F2", self.rename_object)
        A("Next object", "]", lambda: self._cycle_object(1))
        A("Previous object", "[", lambda: self._cycle_object(-1))
        bar.addSeparator()
        self.act_track = A("Track", ["Ctrl+Return", "Ctrl+Enter"], self.start_track)
        self.act_cancel = A("Cancel", "Escape", self.cancel_track)
        self.act_reconnect = A("Reconnect", "Ctrl+R", self.reconnect, toolbar=bar)
        A("Close", [QKeySequence.Close, QKeySequence.Quit], self.close)

    # --- frames --------------------------------------------------------------------------------------
    def step(self, delta: int) -> None:
        self.set_frame(self.frame + delta)

    def set_frame(self, frame: int, force: bool = False) -> None:
        frame = min(max(int(frame), self.frames.first), self.frames.last)
        if frame == self.frame and not force:
            return
        self.frame = frame
        self.result["frame"] = frame
        self.frame_spin.blockSignals(True)
        self.frame_spin.setValue(frame)
        self.frame_spin.blockSignals(False)
        self.framebar.set_current(frame)
        if self.canvas.selection is not None:
            self.canvas.select(None)
        self.loader.request(frame)
        self.refresh()

    def _on_plate(self, frame: int, image: QImage, geometry) -> None:
        if frame != self.frame:
            return
        self.shown_frame = frame
        self.canvas.set_plate(image, *geometry.display_size, geometry.pixel_aspect)
        self._refresh_overlay()

    def _on_plate_failed(self, frame: int, message: str) -> None:
        if frame == self.frame:
            self.shown_frame = None
            self.canvas.set_plate(None, *self.canvas_size(), self.canvas.view.pixel_aspect)
            self.statusBar().showMessage(message)

    def canvas_size(self):
        return self.canvas.view.width, self.canvas.view.height

    # --- objects --------------------------------------------------------------------------------------
    def colour(self, obj: str) -> QColor:
        if obj not in self.colours:
            used = {c.rgb() for c in self.colours.values()}
            choice = next(
                (QColor(*c) for c in PALETTE if QColor(*c).rgb() not in used),
                QColor(*PALETTE[len(self.colours) % len(PALETTE)]),
            )
            self.colours[obj] = choice
        return self.colours[obj]

    def _refresh_objects(self) -> None:
        self.object_list.blockSignals(True)
        self.object_list.clear()
        for name in self.doc.objects:
            pix = QPixmap(12, 12)
            pix.fill(self.colour(name))
            item = QListWidgetItem(QIcon(pix), name)
            item.setFlags(item.flags() | Qt.ItemIsEditable)
            self.object_list.addItem(item)
        if self.active not in self.doc.objects:
            self.active = self.doc.objects[0] if self.doc.objects else None
        if self.active is not None:
            self.object_list.setCurrentRow(self.doc.objects.index(self.active))
        self.object_list.blockSignals(False)

    def set_active(self, obj: Optional[str]) -> None:
        self.active = obj
        self._refresh_objects()
        self.canvas.select(None)
        self.refresh()

    def _on_object_row(self, row: int) -> None:
        if 0 <= row < len(self.doc.objects):
            self.set_active(self.doc.objects[row])
            self.canvas.setFocus()

    def _cycle_object(self, step: int) -> None:
        objs = self.doc.objects
        if objs:
            i = objs.index(self.active) if self.active in objs else 0
            self.set_active(objs[(i + step) % len(objs)])

    def add_object(self, name: Optional[str] = None) -> None:
        name = name if isinstance(name, str) and name else self.doc.new_object_name()
        if self._apply(lambda: self.doc.add_object(name)) is not None:
            self.set_active(name)

    def rename_object(self, new: Optional[str] = None) -> None:
        if self.active is None:
            return
        if isinstance(new, str) and new:
            old = self.active
            if self._apply(lambda: self.doc.rename_object(old, new)) is not None:
                if old in self.colours:
                    self.colours[new] = self.colours.pop(old)
                for per in (self.mattes, self.tracked):
                    for mattes in per.values():
                        if old in mattes:
                            mattes[new] = mattes.pop(old)
                self.set_active(new)
            else:
                self._refresh_objects()
            return
        item = self.object_list.item(self.doc.objects.index(self.active))
        self.object_list.editItem(item)

    def _on_object_renamed(self, item: QListWidgetItem) -> None:
        row = self.object_list.row(item)
        if 0 <= row < len(self.doc.objects) and item.text() != self.doc.objects[row]:
            self.active = self.doc.objects[row]
            self.rename_object(item.text().strip())

    def remove_object(self) -> None:
        if self.active is None:
            return
        gone = self.active
        if self._apply(lambda: self.doc.remove_object(gone)) is not None:
            for per in (self.mattes, self.tracked):
                for mattes in per.values():
                    mattes.pop(gone, None)
            self.set_active(self.doc.objects[0] if self.doc.objects else None)

    # --- edits ------------------------------------------------------------------------------------------
    def _apply(self, edit):
        """Run a document edit; send what it changed to the server. None when it was refused."""
        try:
            changed = edit()
        except MatteBridgeError as e:
            self.statusBar().showMessage(str(e), 6000)
            return None
        self._send(changed)
        self._refresh_objects()
        self.refresh()
        return changed

    def _send(self, keys) -> None:
        if keys:
            self.tracked_stale = bool(self.tracked)
        for frame, obj in sorted(keys):
            key = (frame, obj)
            self.revision[key] = self.revision.get(key, 0) + 1
            fp = self.doc.get(frame, obj)
            if fp is None:
                self.mattes.get(frame, {}).pop(obj, None)
            if self.connected:
                self.worker.request(frame, obj, self.revision[key], None if fp is None else wire_prompt(fp))

    def _ensure_object(self) -> bool:
        if self.active is None:
            self.add_object()
        return self.active is not None

    def _on_point_added(self, x: float, y: float, positive: bool) -> None:
        if not self._ensure_object():
            return
        obj, frame = self.active, self.frame
        if self._apply(lambda: self.doc.add_point(frame, obj, x, y, positive)) is not None:
            self.canvas.select(("point", len(self.doc.get(frame, obj).points) - 1))

    def _on_point_moved(self, index: int, x: float, y: float) -> None:
        obj, frame = self.active, self.frame
        self._apply(lambda: self.doc.move_point(frame, obj, index, x, y))

    def _on_box_set(self, x0: float, y0: float, x1: float, y1: float) -> None:
        if not self._ensure_object():
            return
        obj, frame = self.active, self.frame
        if self._apply(lambda: self.doc.set_box(frame, obj, (x0, y0, x1, y1))) is not None:
            self.canvas.select(("box", -1))

    def delete_selection(self) -> None:
        sel, obj, frame = self.canvas.selection, self.active, self.frame
        if sel is None or obj is None or not self.canvas.editable:
            return
        kind, index = sel
        self.canvas.select(None)
        if kind == "point":
            self._apply(lambda: self.doc.delete_point(frame, obj, index))
        else:
            self._apply(lambda: self.doc.set_box(frame, obj, None))

    def flip_selection(self) -> None:
        sel, obj, frame = self.canvas.selection, self.active, self.frame
        if sel is not None and sel[0] == "point" and self.canvas.editable:
            self._apply(lambda: self.doc.toggle_point(frame, obj, sel[1]))

    def undo(self) -> None:
        if self.canvas.editable:
            self._apply(self.doc.undo)

    def redo(self) -> None:
        if self.canvas.editable:
            self._apply(self.doc.redo)

    # --- server ------------------------------------------------------------------------------------------
    def reconnect(self) -> None:
        if not self.tracking:
            self.connected = False
            self.canvas.set_message(f"connecting to {self.options.server} ...")
            self.worker.connect_server()

    def _on_connected(self, info: dict) -> None:
        self.connected = True
        self.canvas.set_message("")
        model = info.get("info", {}).get("model", "")
        clip = info.get("clip", {})
        colour = self.source.transform
        self.statusBar().showMessage(
            f"server {self.options.server} ({model}); view {colour.colorspace} → {colour.display}/{colour.view}"
            + (
                f"; the server sees {clip.get('colorspace')} → {clip.get('display')}/{clip.get('view')}"
                if clip.get("view") and (clip.get("view"), clip.get("display")) != (colour.view, colour.display)
                else ""
            ),
            10000,
        )
        self.mattes.clear()
        self.revision.clear()
        self.answered.clear()
        self._send(self.doc.keys())  # the clip on the server starts empty: give it every prompt
        self.tracked_stale = False
        self.refresh()
        if self.options.auto_track:
            self.start_track()

    def _on_connect_failed(self, message: str) -> None:
        self.connected = False
        self.result.update(status="error", message=message)
        self.exit_code = EXIT_SERVER
        self.canvas.set_message(message + "\n\nStart it, then press Reconnect (Ctrl+R).")
        self.statusBar().showMessage(message)
        if self.options.auto_track or self.tracking:
            self._set_tracking(False)
            self.finish(EXIT_SERVER)

    def _on_lost(self, message: str) -> None:
        self.statusBar().showMessage(f"{message}; connecting again ...", 10000)
        self.connected = False
        self.worker.connect_server()

    def idle(self) -> bool:
        """Every edit sent has been answered (its matte is shown, or its error reported)."""
        return self.connected and all(self.answered.get(k) == r for k, r in self.revision.items())

    def _on_matte(self, frame: int, obj: str, revision: int, preview) -> None:
        self.answered[(frame, obj)] = max(revision, self.answered.get((frame, obj), 0))
        if self.revision.get((frame, obj)) != revision:
            return  # a newer edit of this key is on its way
        if preview is None:
            self.mattes.get(frame, {}).pop(obj, None)
        else:
            self.mattes.setdefault(frame, {})[obj] = preview
        if frame == self.frame:
            self._refresh_overlay()

    def _on_prompt_failed(self, frame: int, obj: str, revision: int, message: str) -> None:
        self.answered[(frame, obj)] = max(revision, self.answered.get((frame, obj), 0))
        if self.revision.get((frame, obj)) == revision:
            self.statusBar().showMessage(f"frame {frame}, {obj}: {message}", 10000)

    # --- tracking ---------------------------------------------------------------------------------------
    def _out_pattern(self) -> str:
        out = self.out_edit.text().strip()
        if not out:
            raise MatteBridgeError("give the matte files a path (Out), e.g. mattes/{object}.####.exr")
        if len(self.frames) > 1 and not has_frame_token(out):
            raise MatteBridgeError(f"Out {out}: needs a frame token (####) for a range of frames")
        objects = [o for o in self.doc.objects if self.doc.frames(o)]
        if len(objects) > 1 and "{object}" not in out:
            raise MatteBridgeError(f"Out {out}: several objects need {{object}} in the path")
        return os.path.abspath(out)

    def start_track(self) -> None:
        if self.tracking:
            return
        try:
            if not self.connected:
                raise MatteBridgeError(f"not connected to the server at {self.options.server}")
            if self.doc.is_empty():
                raise MatteBridgeError("nothing to track: click on the subject first")
            self.doc.prompts().check(self.frames, lambda f: self.source.geometry(f).display_size)
            out = self._out_pattern()
            if self.options.save:
                self.doc.save(self.options.save)
        except MatteBridgeError as e:
            self.statusBar().showMessage(str(e), 10000)
            if self.options.auto_track:
                self.result.update(status="error", message=str(e))
                self.finish(EXIT_USAGE)
            return
        objects = [o for o in self.doc.objects if self.doc.frames(o)]
        self.result.update(out=out, objects=objects)
        self.tracked.clear()
        self.tracked_stale = False
        self.progress.setValue(0)
        self._set_tracking(True)
        self.statusBar().showMessage(f"tracking {', '.join(objects)} → {out}")
        self.worker.track(
            {
                "direction": self.direction.currentText(),
                "out": out,
                "channels": self.options.channels,
                "prompts": self.doc.to_json(),
            }
        )

    def cancel_track(self) -> None:
        if self.tracking:
            self.statusBar().showMessage("cancelling ...")
            self.worker.cancel()

    def _set_tracking(self, on: bool) -> None:
        self.tracking = on
        self.canvas.editable = not on
        self.track_button.setEnabled(not on)
        self.cancel_button.setEnabled(on)
        self.out_edit.setEnabled(not on)
        self.direction.setEnabled(not on)
        for action in (self.act_undo, self.act_redo, self.act_delete, self.act_open, self.act_reconnect):
            action.setEnabled(not on)

    def _on_track_progress(self, p: dict) -> None:
        self.progress.setMaximum(max(int(p.get("total") or len(self.frames)), 1))
        self.progress.setValue(int(p.get("done") or 0))
        if p.get("previews"):
            self.tracked.setdefault(p["frame"], {}).update(p["previews"])
        else:
            self.tracked.setdefault(p["frame"], {})
        self.framebar.set_marks(self._prompt_marks(), self.tracked)
        if p["frame"] == self.frame:
            self._refresh_overlay()

    def _on_track_finished(self, outcome: dict) -> None:
        self._set_tracking(False)
        paths = outcome.get("paths") or {}
        self.result.update(mattes=paths, summary=outcome.get("summary") or {})
        count = sum(len(v) for v in paths.values())
        if outcome.get("error"):
            self.result.update(status="error", message=outcome["error"])
            self.exit_code = EXIT_SERVER
            self.statusBar().showMessage(f"track failed: {outcome['error']}")
            if self.options.auto_track:
                self.finish(EXIT_SERVER)
        elif outcome.get("cancelled"):
            self.result.update(status="cancelled", message="tracking was cancelled")
            self.exit_code = EXIT_CLOSED
            self.statusBar().showMessage(f"cancelled ({count} matte files written)")
            if self.options.auto_track:
                self.finish(EXIT_CLOSED)
        else:
            self.result.update(status="done", message=f"{count} matte files")
            self.exit_code = EXIT_DONE
            self.progress.setValue(self.progress.maximum())
            self.statusBar().showMessage(f"done: {count} matte files → {self.result['out']}")
            if self.options.on_done == "exit" or self.options.auto_track:
                self.finish(EXIT_DONE)
        self.refresh()

    # --- prompts file --------------------------------------------------------------------------------
    def save_prompts(self) -> bool:
        if not self.options.save:
            return self.save_prompts_as()
        try:
            self.doc.save(self.options.save)
        except MatteBridgeError as e:
            self.statusBar().showMessage(str(e), 10000)
            return False
        self.statusBar().showMessage(f"saved {self.options.save}", 5000)
        return True

    def save_prompts_as(self) -> bool:
        start = self.options.save or os.path.join(os.path.dirname(os.path.abspath(self.options.plate)), "prompts.json")
        path, _ = QFileDialog.getSaveFileName(self, "Save prompts", start, "Prompts (*.json)")
        if not path:
            return False
        self.options.save = path
        self.result["prompts"] = path
        return self.save_prompts()

    def load_prompts(self) -> None:
        start = self.options.prompts or os.path.dirname(os.path.abspath(self.options.plate))
        path, _ = QFileDialog.getOpenFileName(self, "Load prompts", start, "Prompts (*.json)")
        if path:
            self.load_prompts_from(path)

    def load_prompts_from(self, path: str) -> bool:
        try:
            doc = PromptDocument.load(path)
        except MatteBridgeError as e:
            self.statusBar().showMessage(str(e), 10000)
            return False
        old_keys = self.doc.keys()
        self.doc = doc
        if not self.doc.objects:
            self.doc.add_object(self.doc.new_object_name())
        self.options.prompts = path
        self.mattes.clear()
        self._send(old_keys | self.doc.keys())
        self.set_active(self.doc.objects[0])
        self.statusBar().showMessage(f"loaded {path}", 5000)
        return True

    # --- drawing ------------------------------------------------------------------------------------------
    def set_overlay_visible(self, on: bool) -> None:
        self.canvas.overlay_visible = bool(on)
        self.canvas.update()

    def _prompt_marks(self):
        marks: Dict[int, List[QColor]] = {}
        for obj in self.doc.objects:
            for f in self.doc.frames(obj):
                marks.setdefault(f, []).append(self.colour(obj))
        return marks

    def refresh(self) -> None:
        on_frame = self.doc.on_frame(self.frame)
        self.canvas.set_prompts(
            [(obj, on_frame[obj], self.colour(obj), obj == self.active) for obj in self.doc.objects if obj in on_frame]
        )
        self.framebar.set_marks(self._prompt_marks(), self.tracked)
        self.act_undo.setEnabled(self.doc.can_undo and not self.tracking)
        self.act_redo.setEnabled(self.doc.can_redo and not self.tracking)
        self._refresh_overlay()
        self.setWindowModified(self.doc.dirty)

    def overlay_layers(self, frame: int):
        """(object, uint8 matte) shown on a frame: its interactive matte, else the last track's."""
        layers = []
        for obj in self.doc.objects:
            matte = self.mattes.get(frame, {}).get(obj)
            if matte is None:
                matte = self.tracked.get(frame, {}).get(obj)
            if matte is not None:
                layers.append((obj, matte))
        return layers

    def _refresh_overlay(self) -> None:
        layers = self.overlay_layers(self.frame)
        if not layers:
            self.canvas.set_overlay(None)
            return
        shape = preview_shape(self.source.geometry(self.frame), self.options.preview_size)
        self.canvas.set_overlay(
            compose_overlay(
                [
                    (m, self.colour(obj), OVERLAY_OPACITY if obj == self.active else OVERLAY_OPACITY * 0.7)
                    for obj, m in layers
                ],
                shape,
            )
        )

    def _on_cursor(self, x: float, y: float) -> None:
        self.coords.setText(f"x {x:8.1f}  y {y:8.1f}")

    def _on_view_changed(self) -> None:
        view = self.canvas.view
        if view is not None:
            self.zoom_label.setText(
                f"{view.zoom * 100:.0f}%" + (f"  aspect {view.pixel_aspect:g}" if view.pixel_aspect != 1 else "")
            )

    # --- closing -------------------------------------------------------------------------------------------
    def finish(self, code: int) -> None:
        self.exit_code = code
        QTimer.singleShot(0, self.close)

    def closeEvent(self, event) -> None:
        if self.doc.dirty and not self.options.save and not self.options.auto_track and not self.doc.is_empty():
            answer = QMessageBox.question(
                self,
                "MatteBridge",
                "Save the prompts before closing?",
                QMessageBox.Save | QMessageBox.Discard | QMessageBox.Cancel,
            )
            if answer == QMessageBox.Cancel or (answer == QMessageBox.Save and not self.save_prompts_as()):
                event.ignore()
                return
        elif self.doc.dirty and self.options.save:
            self.save_prompts()
        self.closing = True
        if self.tracking:
            self.worker.cancel()
            self.result.update(status="cancelled", message="the window was closed while tracking")
            self.exit_code = EXIT_CLOSED
        self.result["objects"] = self.result["objects"] or [o for o in self.doc.objects if self.doc.frames(o)]
        self.loader.stop()
        self.worker.stop()
        event.accept()


def compose_overlay(layers, shape) -> QImage:
    """Mattes (uint8, any size) tinted with their colours over transparent, as one premultiplied RGBA image."""
    h, w = shape
    rgb = np.zeros((h, w, 3), np.float32)
    alpha = np.zeros((h, w), np.float32)
    for matte, colour, opacity in layers:
        m = matte.astype(np.float32) / 255.0
        if m.shape != (h, w):
            m = np.clip(area_resize(m, h, w), 0.0, 1.0)
        m *= opacity
        tint = np.array([colour.red(), colour.green(), colour.blue()], np.float32) / 255.0
        rgb = rgb * (1.0 - m[..., None]) + tint * m[..., None]
        alpha = alpha * (1.0 - m) + m
    rgba = np.dstack([rgb, alpha])
    data = np.ascontiguousarray((rgba * 255.0 + 0.5).astype(np.uint8))
    return QImage(data.tobytes(), w, h, 4 * w, QImage.Format_RGBA8888_Premultiplied).copy()
