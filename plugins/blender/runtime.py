"""What the add-on holds between operator calls (not saved: connections, jobs, preview mattes). No bpy."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

from .jobs import BackgroundJob, Connection, PreviewResult


@dataclass
class ServerState:
    address: str = ""
    status: str = "unknown"  # unknown | checking | ok | error
    info: dict = field(default_factory=dict)
    message: str = ""


@dataclass
class Runtime:
    connections: Dict[Tuple[str, float], Connection] = field(default_factory=dict)
    server: ServerState = field(default_factory=ServerState)
    track: Optional[BackgroundJob] = None
    track_strip: str = ""
    previews: Dict[tuple, PreviewResult] = field(default_factory=dict)  # (scene, strip, object, frame) -> matte
    geometry: Dict[tuple, dict] = field(default_factory=dict)  # (scene, strip, frame) -> plate geometry
    preview_serial: Dict[tuple, int] = field(default_factory=dict)
    last_message: Tuple[str, str] = ("", "")  # (level, text) of the last finished job
    drag: Optional[Tuple[float, float, float, float]] = None  # prompt-tool rubber band, region pixels

    def connection(self, address: str, timeout: float) -> Connection:
        key = (address, float(timeout))
        conn = self.connections.get(key)
        if conn is None:
            conn = self.connections[key] = Connection(address, timeout)
        return conn

    def close(self) -> None:
        if self.track is not None and not self.track.finished:
            self.track.cancel()
        for conn in self.connections.values():
            conn.forget()
        self.connections.clear()
        self.previews.clear()


STATE = Runtime()
