"""A progress bar with an ETA on a terminal; plain periodic lines in farm logs."""

from __future__ import annotations

import sys
import time


class ProgressBar:
    def __init__(self, label: str, stream=None, width: int = 30):
        self.label, self.width = label, width
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.monotonic()
        self._last_line = -1

    def __call__(self, done: int, total: int, frame=None) -> None:
        elapsed = time.monotonic() - self.start
        eta = elapsed / done * (total - done) if done else 0.0
        pct = 100.0 * done / total if total else 100.0
        where = f" frame {frame}" if frame is not None else ""
        text = f"{self.label} {done}/{total}{where}  {pct:5.1f}%  {elapsed:6.1f}s elapsed, ETA {eta:6.1f}s"
        if self.tty:
            filled = int(self.width * done / total) if total else self.width
            self.stream.write("\r[" + "#" * filled + "-" * (self.width - filled) + "] " + text)
            if done >= total:
                self.stream.write("\n")
        else:  # farm logs: a line per 10%, not per frame
            step = int(pct // 10)
            if step == self._last_line and done < total:
                return
            self._last_line = step
            self.stream.write(text + "\n")
        self.stream.flush()
