"""Jobs meet Blender: a worker thread per job in the UI, drained on the main thread by a bpy.app.timers
callback (the only place results touch Blender data); inline in background mode (scripts, render farms)."""

from __future__ import annotations

import traceback
from typing import Callable, List, Tuple

import bpy

from .jobs import BackgroundJob, Event
from .runtime import STATE

Handler = Callable[[BackgroundJob, Event], None]
_active: List[Tuple[BackgroundJob, Handler]] = []
TERMINAL = ("done", "error", "cancelled")
# None: jobs run inline exactly when Blender runs without a UI (bpy.app.background: scripts, farms), so an
# operator returns with its result; False: always in worker threads drained by the timer, as in the UI (a
# headless host that runs its own loop calls `tick()`; the tests use it to drive the UI path).
INLINE = None


def inline() -> bool:
    return bpy.app.background if INLINE is None else bool(INLINE)


def submit(job: BackgroundJob, handler: Handler) -> BackgroundJob:
    """Start `job`; `handler(job, event)` runs on the main thread for each of its events."""
    if inline():
        job.run()
        for event in job.poll():
            handler(job, event)
        return job
    job.start()
    _active.append((job, handler))
    if not bpy.app.timers.is_registered(tick):
        bpy.app.timers.register(tick, first_interval=0.05, persistent=True)
    return job


def busy() -> bool:
    return bool(_active)


def tick():
    """Drain finished work into Blender (the timer callback); returns the next interval, None when idle."""
    for item in list(_active):
        job, handler = item
        for event in job.poll():
            try:
                handler(job, event)
            except Exception as e:  # never let a callback error kill the timer; say it once, in one line
                traceback.print_exc()
                notify("ERROR", f"MatteBridge: {type(e).__name__}: {e}")
            if event.kind in TERMINAL:
                _active.remove(item)
    redraw()
    return 0.1 if _active else None


def redraw() -> None:
    wm = bpy.context.window_manager
    for window in getattr(wm, "windows", []):
        for area in window.screen.areas:
            if area.type == "SEQUENCE_EDITOR":
                area.tag_redraw()


def notify(level: str, message: str) -> None:
    """Report from outside an operator (a finished job): the status bar and Info log, and the panel."""
    STATE.last_message = (level, message)
    if bpy.app.background:
        print(f"{level}: {message}")
        return
    wm = bpy.context.window_manager
    windows = list(getattr(wm, "windows", []))
    try:
        if windows:
            with bpy.context.temp_override(window=windows[0]):
                bpy.ops.mattebridge.notify(level=level, message=message)
        else:
            bpy.ops.mattebridge.notify(level=level, message=message)
    except Exception:
        print(f"MatteBridge {level}: {message}")


def cancel_all() -> None:
    for job, _ in list(_active):
        job.cancel()
    _active.clear()
    if bpy.app.timers.is_registered(tick):
        bpy.app.timers.unregister(tick)
