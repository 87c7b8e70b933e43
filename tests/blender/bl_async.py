"""The UI path: operators return at once, the network runs in worker threads, and the timer callback
(tasks.tick, called here as Blender's timer loop would) brings progress and results into Blender data."""

import os
import sys
import time

import bpy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bl_common as bl  # noqa: E402


def pump(tasks, until, limit=120.0, every=None):
    """Call the timer callback like Blender's event loop does, until `until()` or `limit` seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and not until():
        tasks.tick()
        if every:
            every()
        time.sleep(0.05)
    tasks.tick()


def main(a):
    r = {}
    bl.install(a["zip"])
    tasks, runtime = bl.addon("tasks"), bl.addon("runtime")
    state = runtime.STATE
    tasks.INLINE = False
    bl.prefs().address, bl.prefs().timeout = a["address"], 30.0
    scene = bpy.context.scene
    bpy.ops.wm.save_as_mainfile(filepath=a["blend"])
    scene = bpy.context.scene
    strip = bl.image_strip(scene, "plate", a["plate_dir"], "plate.1001.exr", list(range(1001, 1009)))
    strip.colorspace_settings.name = "ACEScg"
    scene.sequence_editor.active_strip = strip
    bl.color_strip(scene.sequence_editor, "title", 3, 4, 3)  # the channel above is taken here
    scene.frame_current = 2  # file 1002

    t0 = time.monotonic()
    r["info"] = bl.call(bpy.ops.mattebridge.server_info)
    r["info_status_at_return"] = state.server.status
    pump(tasks, lambda: state.server.status != "checking", 30)
    r["info_status"] = state.server.status

    bl.call(bpy.ops.mattebridge.add_point, x=480, y=270)
    r["preview"] = bl.call(bpy.ops.mattebridge.preview)
    r["previews_at_return"] = len(state.previews)
    pump(tasks, lambda: not tasks.busy(), 30)
    r["previews"] = len(state.previews)

    t0 = time.monotonic()
    r["track"] = bl.call(bpy.ops.mattebridge.track, direction="FORWARD")
    r["track_return_seconds"] = time.monotonic() - t0
    job = state.track
    r["timer_registered"] = bpy.app.timers.is_registered(tasks.tick)
    r["state_at_return"] = job.state
    samples = []
    pump(tasks, lambda: job.finished and not tasks.busy(), 180, every=lambda: samples.append((job.done, job.total)))
    r["track_seconds"] = time.monotonic() - t0
    r["progress_samples"] = sorted(set(samples))
    r["state"] = job.state
    r["message"] = list(state.last_message)
    r["tick_when_idle"] = tasks.tick()
    mattes = [s for s in bl.every(scene.sequence_editor) if s.get("mattebridge_matte_of")]
    r["mattes"] = [[s.name, s.channel] for s in mattes]
    if mattes:
        mattes[0]["marker"] = "first run"

    # cancel: new prompts (so nothing is reused), stop after the first frame
    scene.frame_current = 1
    bl.call(bpy.ops.mattebridge.add_point, x=300, y=200)
    r["track2"] = bl.call(bpy.ops.mattebridge.track, direction="FORWARD")
    job2 = state.track
    r["track_while_running"] = bl.call(bpy.ops.mattebridge.track, direction="FORWARD")
    pump(tasks, lambda: job2.done >= 1 or job2.finished, 120)
    r["cancel"] = bl.call(bpy.ops.mattebridge.cancel)
    pump(tasks, lambda: job2.finished and not tasks.busy(), 60)
    r["cancel_state"] = job2.state
    r["cancel_done"] = [job2.done, job2.total]
    r["cancel_message"] = list(state.last_message)
    r["mattes_after_cancel"] = [
        (s.name, s.get("marker")) for s in bl.every(scene.sequence_editor) if s.get("mattebridge_matte_of")
    ]
    return r


bl.run(main)
