"""The node, its knobs and callbacks, driven like a user would, on the nuke STAND-IN (tests/nuke/standin_nuke.py)
with a real `mattebridge serve`. The stand-in raises if the plugin touches nodes off the main thread."""

import os
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "nuke"))
from conftest import read_exr  # noqa: E402
from nuke_harness import PLUGIN, install_standin, small_plate, wait_job  # noqa: E402


@pytest.fixture()
def nuke():
    standin = install_standin()
    from mattebridge_nuke import callbacks

    callbacks._jobs.clear()
    yield standin
    for job in list(callbacks._jobs.values()):  # nothing left running into the next test
        job.cancel()
        wait_job(job, standin)


def script(nuke, tmp_path, server, upstream="read", last=1006, colorspace="default (scene_linear)", **plate_kw):
    """A saved script: plate Read (-> Grade or Dot) -> MatteBridge, created from the menu, current frame 1002.
    The Read's colour space reads the way Nuke shows a resolved default (the stand-in's own is a bare "default")."""
    pattern = small_plate(tmp_path / "plate", last=last, **plate_kw)
    nuke.root()["name"].setValue(str(tmp_path / "comp.nk"))
    read = nuke.nodes.Read(file=pattern, first=1001, last=last, colorspace=colorspace)
    tip = read
    if upstream == "grade":
        tip = nuke.nodes.Grade(multiply=1.25)
        tip.setInput(0, read)
    elif upstream == "dot":
        tip = nuke.nodes.Dot()
        tip.setInput(0, read)
    nuke.standin_select(tip)
    nuke.standin_set_frame(1002)
    exec(compile((PLUGIN / "menu.py").read_text(), "menu.py", "exec"), {})
    exec(nuke.menu("Nodes").standin_items()["MatteBridge"].standin_items()["MatteBridge"], {})
    node = [n for n in nuke.root().nodes() if n.Class() == "Group"][-1]
    node["server"].setValue(server.address)
    return read, node, pattern


def press(nuke, knob):
    from mattebridge_nuke import callbacks

    nuke.standin_press(knob)
    job = callbacks._jobs.get(knob.node().fullName())
    assert job is not None, nuke.standin_messages()
    return wait_job(job, nuke)


def add_point(nuke, node, x, y, positive=True, slot=1):
    nuke.standin_press(node["o%d_add%s" % (slot, "fg" if positive else "bg")])
    knob = [
        node[k]
        for k in node.knobs()
        if k.startswith("o%d_%s" % (slot, "fg" if positive else "bg")) and node[k].visible()
    ][-1]
    nuke.standin_user_set(knob, x, y)  # dragged to where the user wants it
    return knob


def alpha_of(image, channel="rgba.alpha"):
    return image.placed(channel, image.bbox)


def cached(node, obj, frame):
    """A cached matte as Nuke would show it: rows flipped to y up, placed over its bbox."""
    from mattebridge_nuke.cache import open_cache
    from mattebridge_nuke.nukehost import cache_root

    pixels, spec = read_exr(open_cache(cache_root(node)).published_path(obj, frame))
    return pixels[::-1, :, 0], spec


def test_the_node_comes_with_one_object_and_its_graph(nuke, tmp_path, mb_server):
    read, node, _ = script(nuke, tmp_path, mb_server)
    assert node.input(0) is read and node["first"].value() == 1001 and node["last"].value() == 1006
    assert node["o1_name"].value() == "main" and node["channel"].value() == "rgba.alpha"
    inner = {n.name(): n for n in node.nodes()}
    assert set(inner) == {"plate", "Output1", "mb_read_1", "mb_copy_1"}
    mread, copy = inner["mb_read_1"], inner["mb_copy_1"]
    assert (
        mread["file"].getText() == "[file dirname [value root.name]]/mattebridge/[value parent.name]/main/main.####.exr"
    )
    assert mread["file"].value().endswith("/main/main.%04d.exr")  # Nuke's value(): printf notation
    assert mread["raw"].value() and mread["on_error"].value() == "black"
    assert copy.input(0) is inner["plate"] and copy.input(1) is mread and copy["to0"].value() == "rgba.alpha"
    assert inner["Output1"].input(0) is copy
    from mattebridge_nuke.nukehost import cache_root

    assert cache_root(node) == str(tmp_path / "mattebridge" / "MatteBridge")


def test_handles_are_keyed_where_they_are_dragged_and_become_prompts(nuke, tmp_path, mb_server):
    from mattebridge_nuke import nukehost
    from mattebridge_nuke.prompts import to_wire

    _, node, _ = script(nuke, tmp_path, mb_server)
    fg = add_point(nuke, node, 30.0, 40.0)
    assert fg.getKeyList() == [1002.0] and node["o1_frames"].value() == "1002"
    nuke.standin_set_frame(1004)
    nuke.standin_user_set(fg, 35.0, 42.0)  # a correction on 1004: a key there
    bg = add_point(nuke, node, 70.0, 10.0, positive=False)
    box = node["o1_box"]
    nuke.standin_user_set(box, 20.0, 10.0, 60.0, 50.0)  # an unanimated knob edited: keyed by knobChanged
    assert fg.getKeyList() == [1002.0, 1004.0] and box.getKeyList() == [1004.0]
    assert node["o1_frames"].value() == "1002, 1004"
    doc = to_wire(nukehost.node_prompts(node), 70)
    assert doc == {
        "version": 1,
        "objects": [
            {
                "name": "main",
                "frames": [
                    {"frame": 1002, "points": [{"x": 30.0, "y": 30.0, "positive": True}]},
                    {
                        "frame": 1004,
                        "points": [{"x": 35.0, "y": 28.0, "positive": True}, {"x": 70.0, "y": 60.0, "positive": False}],
                        "box": [20.0, 20.0, 60.0, 60.0],
                    },
                ],
            }
        ],
    }
    assert bg.label() == "main -1"
    nuke.standin_press(node["o1_clear"])  # removes this frame's prompts
    assert node["o1_frames"].value() == "1002" and not bg.visible() and not box.isAnimated()


def test_preview_shows_the_matte_in_the_output_at_once(nuke, tmp_path, mb_server):
    read, node, pattern = script(nuke, tmp_path, mb_server)
    add_point(nuke, node, 30.0, 40.0)
    outcome = press(nuke, node["preview"])
    assert outcome.status == "done", (outcome, nuke.standin_messages())
    assert node["status"].value() == "previewed main on frame 1002"
    assert nuke.standin_tasks()[-1]._title == "MatteBridge MatteBridge: preview"
    out, plate = nuke.standin_render(node, 1002), nuke.standin_render(read, 1002)
    assert out.format == plate.format and out.bbox == plate.bbox == (5, 7, 85, 67)
    for c in ("rgba.red", "rgba.green", "rgba.blue"):
        assert np.array_equal(out.channels[c], plate.channels[c])
    matte, spec = cached(node, "main", 1002)
    assert np.array_equal(alpha_of(out), matte) and matte.max() > 0
    assert alpha_of(nuke.standin_render(node, 1003)).max() == 0  # no matte there yet: black
    assert [n for n in node.nodes() if n.Class() == "Read"][0]._reloads >= 1
    assert not [n for n in node.nodes() if n.Class() == "Write"]  # the Read's files were used directly
    assert nuke.standin_executed() == []


def test_track_runs_in_a_thread_and_keeps_the_ui_usable(nuke, tmp_path, mb_server):
    _, node, _ = script(nuke, tmp_path, mb_server, upstream="dot")
    add_point(nuke, node, 30.0, 40.0)
    from mattebridge_nuke import callbacks

    nuke.standin_press(node["track_forward"])
    job = callbacks._jobs[node.fullName()]
    assert job.thread is not threading.current_thread() and job.thread.is_alive()
    nuke.standin_press(node["track_both"])  # a second press while it runs: told to wait
    assert "is busy" in nuke.standin_messages()[-1]
    outcome = wait_job(job, nuke)
    assert outcome.status == "done" and outcome.published == [("main", f) for f in range(1002, 1007)], outcome
    assert nuke.standin_tasks()[-1].standin_history[-1] > 50
    for f in range(1002, 1007):
        assert np.array_equal(alpha_of(nuke.standin_render(node, f)), cached(node, "main", f)[0])


def test_cancel_button_stops_the_pass_and_keeps_what_is_done(nuke, tmp_path, mb_server):
    _, node, _ = script(nuke, tmp_path, mb_server, last=1016)
    add_point(nuke, node, 30.0, 40.0)
    from mattebridge_nuke import callbacks

    nuke.standin_press(node["track_forward"])
    job = callbacks._jobs[node.fullName()]
    nuke.standin_process_events(until=lambda: bool(job.outcome) or bool(nuke.standin_tasks()[-1].standin_history))
    nuke.standin_press(node["cancel"])
    outcome = wait_job(job, nuke)
    assert outcome.status == "cancelled" and node["status"].value().startswith("cancelled"), outcome
    assert 0 < len(outcome.published) < 15


def test_an_upstream_change_is_rendered_and_the_temp_files_go(nuke, tmp_path, mb_server):
    read, node, _ = script(nuke, tmp_path, mb_server, upstream="grade")
    add_point(nuke, node, 30.0, 40.0)
    outcome = press(nuke, node["preview"])
    assert outcome.status == "done", outcome
    ((write, first, last, proxy, pattern),) = nuke.standin_executed()
    assert (first, last, proxy) == (1002, 1002, False) and pattern.endswith(".%04d.exr")
    assert not [n for n in node.nodes() if n.Class() == "Write"]  # the internal Write is gone
    assert not os.path.exists(os.path.dirname(pattern))  # and so are the frames it rendered
    out = nuke.standin_render(node, 1002)
    assert np.allclose(out.channels["rgba.red"], nuke.standin_render(read, 1002).channels["rgba.red"] * 1.25)
    assert np.array_equal(alpha_of(out), cached(node, "main", 1002)[0])


def test_proxy_mode_sends_full_size_frames_and_stays_on(nuke, tmp_path, mb_server):
    _, node, _ = script(nuke, tmp_path, mb_server, upstream="grade")
    nuke.root()["proxy"].setValue(True)  # the stand-in scales formats, bboxes and renders by 0.5 now
    add_point(nuke, node, 30.0, 40.0)  # knob values stay full size
    outcome = press(nuke, node["preview"])
    assert outcome.status == "done", outcome
    assert nuke.standin_executed()[0][3] is False and nuke.root()["proxy"].value() is True
    matte, spec = cached(node, "main", 1002)
    assert (spec.full_width, spec.full_height, spec.width, spec.height) == (100, 70, 80, 60)


def test_anamorphic_plates_keep_their_pixel_aspect(nuke, tmp_path, mb_server):
    _, node, _ = script(nuke, tmp_path, mb_server, aspect=2.0)
    add_point(nuke, node, 30.0, 40.0)
    assert press(nuke, node["preview"]).status == "done"
    out = nuke.standin_render(node, 1002)
    assert out.format == (100, 70, 2.0) and cached(node, "main", 1002)[1].get_float_attribute("PixelAspectRatio") == 2.0


def test_objects_in_one_channel_or_one_layer_each(nuke, tmp_path, mb_server):
    _, node, _ = script(nuke, tmp_path, mb_server)
    add_point(nuke, node, 30.0, 40.0)
    slot = node["add_object"].execute() or 2
    nuke.standin_user_set(node["o%d_name" % slot], "prop.v2")
    add_point(nuke, node, 75.0, 20.0, slot=slot)
    assert press(nuke, node["preview"]).status == "done"
    merged = nuke.standin_render(node, 1002)
    main, prop = cached(node, "main", 1002)[0], cached(node, "prop.v2", 1002)[0]
    assert np.array_equal(alpha_of(merged), np.maximum(main, prop))
    nuke.standin_user_set(node["output"], "layer per object")
    layered = nuke.standin_render(node, 1002)
    assert np.array_equal(alpha_of(layered, "mb_main.alpha"), main)
    assert np.array_equal(alpha_of(layered, "mb_prop_v2.alpha"), prop)
    assert "rgba.alpha" not in layered.channels  # the plate's own channels are left alone
    assert set(nuke.layers()) >= {"mb_main", "mb_prop_v2"}
    nuke.standin_press(node["o%d_remove" % slot])
    assert not [k for k in node.knobs() if k.startswith("o%d_" % slot)]
    assert [n.name() for n in node.nodes() if n.Class() == "Read"] == ["mb_read_1"]


def test_moving_a_correction_hides_only_the_frames_after_it(nuke, tmp_path, mb_server):
    _, node, _ = script(nuke, tmp_path, mb_server)
    fg = add_point(nuke, node, 30.0, 40.0)
    assert press(nuke, node["track_forward"]).status == "done"
    before = {f: alpha_of(nuke.standin_render(node, f)) for f in range(1002, 1007)}
    nuke.standin_set_frame(1004)
    nuke.standin_user_set(fg, 50.0, 40.0)  # a correction on 1004
    assert node["status"].value().startswith("3 mattes out of date")
    for f in (1002, 1003):
        assert np.array_equal(alpha_of(nuke.standin_render(node, f)), before[f])
    for f in (1004, 1005, 1006):
        assert alpha_of(nuke.standin_render(node, f)).max() == 0
    nuke.standin_press(node["o1_clear"])  # take the correction back: the mattes come back, no tracking
    assert node["status"].value() == "0 mattes out of date (kept aside), 3 brought back"
    for f in range(1002, 1007):
        assert np.array_equal(alpha_of(nuke.standin_render(node, f)), before[f])


def test_a_farm_render_needs_neither_the_plugin_nor_a_server(nuke, tmp_path, mb_server, monkeypatch):
    _, node, _ = script(nuke, tmp_path, mb_server)
    add_point(nuke, node, 30.0, 40.0)
    assert press(nuke, node["track_forward"]).status == "done"
    expected = alpha_of(nuke.standin_render(node, 1005))
    for name in [m for m in sys.modules if m.startswith(("mattebridge_nuke", "mattebridge"))]:
        monkeypatch.setitem(sys.modules, name, None)  # importing them now fails
    monkeypatch.setitem(sys.modules, "mattebridge_nuke", None)
    assert np.array_equal(alpha_of(nuke.standin_render(node, 1005)), expected) and expected.max() > 0
    nuke.standin_user_set(node["edge"], "hard")  # the stored knobChanged does nothing without the plugin


def test_problems_are_messages_not_tracebacks(nuke, tmp_path, mb_server):
    _, node, _ = script(nuke, tmp_path, mb_server)
    nuke.standin_press(node["track_forward"])
    assert (
        nuke.standin_messages()[-1] == "MatteBridge MatteBridge: no prompts yet: add a point or a box on the "
        "object, in the Viewer"
    )
    add_point(nuke, node, 30.0, 40.0)
    nuke.root()["name"].setValue("")
    nuke.standin_press(node["preview"])
    assert "save the script first" in nuke.standin_messages()[-1]
    nuke.root()["name"].setValue(str(tmp_path / "comp.nk"))
    node.setInput(0, None)
    nuke.standin_press(node["preview"])
    assert "connect the plate" in nuke.standin_messages()[-1]
    assert node["status"].value().startswith("error: ")


def test_the_standin_refuses_nodes_off_the_main_thread(nuke):
    read = nuke.nodes.Read()
    errors = []
    t = threading.Thread(target=lambda: errors.append(_try(lambda: read.name())))
    t.start()
    t.join()
    assert isinstance(errors[0], nuke.StandinError)


def _try(fn):
    try:
        return fn()
    except Exception as e:  # noqa: BLE001
        return e


def test_a_loaded_script_shows_only_the_keyed_handles(nuke, tmp_path, mb_server):
    _, node, _ = script(nuke, tmp_path, mb_server)
    add_point(nuke, node, 30.0, 40.0)
    nuke.standin_press(node["o1_setbox"])
    nuke.standin_user_set(node["output"], "layer per object")
    nuke.standin_load(node)  # Nuke does not save visibility: the node's onCreate puts it back
    shown = sorted(k for k in node.knobs() if k.startswith(("o1_fg", "o1_bg", "o1_box")) and node[k].visible())
    assert shown == ["o1_box", "o1_fg1"]
    assert node["layer_prefix"].visible() and not node["channel"].visible()


def test_handles_without_an_input_start_in_the_middle_of_the_script_format(nuke, tmp_path, mb_server):
    _, node, _ = script(nuke, tmp_path, mb_server)
    node.setInput(0, None)
    nuke.standin_press(node["o1_addfg"])
    assert (node["o1_fg1"].value(0), node["o1_fg1"].value(1)) == (960.0, 540.0)  # root format 1920x1080


def test_the_standin_raises_on_what_it_does_not_know(nuke):
    with pytest.raises(AttributeError):
        nuke.nodes.Blur()
    read = nuke.nodes.Read()
    with pytest.raises(NameError):
        read["no_such_knob"]
    with pytest.raises(ValueError):
        read["on_error"].setValue("ignore")
    with pytest.raises(nuke.StandinError):
        nuke.nodes.Read(no_such_knob=1)
    with pytest.raises(AttributeError):
        nuke.allNodes()


# --- where Nuke is less kind than a naive stand-in (tests/nuke/standin_nuke.py, docstring) ------------------
def test_execute_in_main_thread_with_result_is_modelled_like_nuke(nuke, capfd):
    with pytest.raises(nuke.StandinError, match="would hang in Nuke"):
        nuke.executeInMainThreadWithResult(lambda: 1)  # from the main thread: Nuke deadlocks

    def boom():
        raise ValueError("boom")

    got = []
    t = threading.Thread(target=lambda: got.append(nuke.executeInMainThreadWithResult(boom)))
    t.start()
    nuke.standin_process_events(until=lambda: not t.is_alive())
    t.join()
    assert got == [None] and "ValueError: boom" in capfd.readouterr().err  # printed, not raised


def test_a_failure_on_the_main_thread_reaches_the_job_not_nukes_console(nuke, tmp_path, mb_server, monkeypatch):
    """Nuke swallows the main-thread call's exception (prints it, returns None): the job must still fail with
    the reason (jobs._on_main hands it back as a value)."""
    from mattebridge_nuke import nukehost

    _, node, _ = script(nuke, tmp_path, mb_server, upstream="grade")
    add_point(nuke, node, 30.0, 40.0)

    def render(node, pattern, first, last):
        raise nukehost.JobError("rendering the node's input, frames %d-%d: disk full" % (first, last))

    monkeypatch.setattr(nukehost, "render_input", render)
    outcome = press(nuke, node["preview"])
    assert outcome.status == "failed" and outcome.message.endswith("frames 1002-1002: disk full"), outcome
    assert node["status"].value() == outcome.message


def test_knob_changed_runs_for_the_plugins_own_changes_too(nuke, tmp_path, mb_server):
    _, node, _ = script(nuke, tmp_path, mb_server)
    seen = []
    from mattebridge_nuke import callbacks

    real = callbacks._knob_changed
    callbacks._knob_changed = lambda n, k: (seen.append(k.name()), real(n, k))
    try:
        node["edge"].setValue("hard")  # from code, panel closed: Nuke runs knobChanged
        node.setInput(0, node.input(0))  # a dummy knob, as Nuke does when inputs change
    finally:
        callbacks._knob_changed = real
    assert seen == ["edge", "inputChange"]
    fg = add_point(nuke, node, 30.0, 40.0)
    nuke.standin_set_frame(1004)
    nuke.standin_user_set(fg, 35.0, 42.0)
    assert fg.getKeyList() == [1002.0, 1004.0]
    nuke.standin_press(node["o1_clear"])  # its removeKeyAt runs knobChanged, which must not key 1004 again
    assert fg.getKeyList() == [1002.0] and node["o1_frames"].value() == "1002"


def test_the_internal_write_sets_file_type_before_the_exr_knobs(nuke, tmp_path, mb_server):
    write = nuke.nodes.Write()
    assert "datatype" not in write.knobs() and "compression" not in write.knobs()
    with pytest.raises(nuke.StandinError, match="no knob 'datatype'"):
        nuke.nodes.Write(file_type="exr", datatype="32 bit float")
    write["file_type"].setValue("exr")
    assert write["datatype"].value() == "16 bit half" and write["compression"].value() == "Zip (1 scanline)"
    _, node, _ = script(nuke, tmp_path, mb_server, upstream="grade")
    add_point(nuke, node, 30.0, 40.0)
    assert press(nuke, node["preview"]).status == "done"
    matte, spec = cached(node, "main", 1002)
    ((_, _, _, _, pattern),) = nuke.standin_executed()
    assert pattern.endswith("input.%04d.exr")


def test_a_read_typed_with_hashes_is_used_directly(nuke, tmp_path, mb_server):
    read, node, pattern = script(nuke, tmp_path, mb_server)
    read["file"].setValue(pattern.replace("%04d", "####"))  # as a user types it
    assert read["file"].value() == pattern  # Nuke gives %04d back
    add_point(nuke, node, 30.0, 40.0)
    assert press(nuke, node["preview"]).status == "done"
    assert nuke.standin_executed() == []  # the Read's own files, not a render


@pytest.mark.parametrize(
    "colorspace, override, direct",
    [
        ("default", "", False),  # a bare default names no space: the input is rendered in the working space
        ("default", "ACEScg", True),  # the node's override names it
        ("default (scene_linear)", "", True),
        ("scene_linear", "", True),
    ],
)
def test_the_reads_colour_space_as_nuke_shows_it(nuke, tmp_path, mb_server, colorspace, override, direct):
    from mattebridge_nuke import nukehost

    _, node, _ = script(nuke, tmp_path, mb_server, colorspace=colorspace)
    node["colorspace"].setValue(override)
    source = nukehost.input_source(node, 1001, 1006)
    assert (source.pattern is not None) == direct, source
    if direct:
        assert source.colorspace == (override or "scene_linear")
    else:
        assert source.colorspace == "scene_linear"  # the working space the render is in
