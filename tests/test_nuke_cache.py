"""Cache keys (which mattes a change affects) and the cache folder (publish, put aside, bring back)."""

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "nuke"))
import nuke_harness  # noqa: E402,F401 - puts the plugin on sys.path

from mattebridge_nuke import cache as cache_mod  # noqa: E402
from mattebridge_nuke.cache import MatteCache, frame_name  # noqa: E402
from mattebridge_nuke.keys import KeyContext  # noqa: E402

MODEL = {"model": "sam2.1_hiera_tiny", "checkpoint_sha256": "ab" * 32, "image_size": 256}
FRAMES = range(1001, 1021)


def point(x, y, positive=True):
    return {"points": [[float(x), float(y), positive]], "box": None}


def context(prompts=None, stamps=None, settings=None, **kw):
    prompts = (
        prompts
        if prompts is not None
        else {"hero": {1005: point(10, 10), 1012: point(12, 12)}, "prop": {1008: point(50, 50)}}
    )
    stamps = stamps if stamps is not None else {f: "stamp%d" % f for f in FRAMES}
    return KeyContext(
        kw.get("model", MODEL),
        settings or {"edge": "soft"},
        (100, 70, 1.0),
        prompts,
        stamps,
        kw.get("first", 1001),
        kw.get("last", 1020),
    )


def keys(ctx, direction):
    return {(o, f): v for o, per in ctx.targets(direction).items() for f, v in per.items()}


def changed(a, b):
    """(object, frame) whose key differs between two target maps (present in both)."""
    return sorted(k for k in a if k in b and a[k] != b[k])


def test_forward_pass_covers_the_earliest_prompt_onwards():
    ctx = context()
    assert ctx.span("forward") == (1005, 1020)
    t = keys(ctx, "forward")
    assert {f for o, f in t if o == "hero"} == set(range(1005, 1021))
    # prop's track starts with the others at 1005 (its first prompt, on 1008, is known from the start)
    assert {f for o, f in t if o == "prop"} == set(range(1005, 1021))
    assert {kind for kind, _ in t.values()} == {"forward"}


def test_a_correction_invalidates_its_frame_onwards_for_its_object_only():
    before = keys(context(), "forward")
    after = keys(
        context({"hero": {1005: point(10, 10), 1012: point(13, 12)}, "prop": {1008: point(50, 50)}}), "forward"
    )
    assert changed(before, after) == [("hero", f) for f in range(1012, 1021)]


def test_a_new_key_invalidates_from_that_frame():
    before = keys(context(), "forward")
    after = keys(
        context(
            {
                "hero": {1005: point(10, 10), 1012: point(12, 12)},
                "prop": {1008: point(50, 50), 1015: point(40, 40, False)},
            }
        ),
        "forward",
    )
    assert changed(before, after) == [("prop", f) for f in range(1015, 1021)]


def test_the_first_prompt_is_seen_from_every_frame_of_the_pass():
    before = keys(context(), "forward")
    after = keys(
        context({"hero": {1005: point(10, 10), 1012: point(12, 12)}, "prop": {1008: point(51, 50)}}), "forward"
    )
    assert changed(before, after) == [("prop", f) for f in range(1005, 1021)]


def test_an_earlier_start_moves_every_track():
    before = keys(context(), "forward")
    after = keys(
        context(
            {"hero": {1005: point(10, 10), 1012: point(12, 12)}, "prop": {1003: point(50, 50), 1008: point(50, 50)}}
        ),
        "forward",
    )
    assert set(changed(before, after)) == set(before)  # prop starts at 1003: the pass starts there


def test_backward_pass_is_the_mirror_image():
    prompts = {"hero": {1005: point(10, 10), 1012: point(12, 12)}, "prop": {1006: point(30, 30), 1008: point(50, 50)}}
    ctx = context(prompts)
    assert ctx.span("backward") == (1001, 1012)
    before = keys(ctx, "backward")
    prompts["prop"][1006] = point(31, 30)
    after = keys(context(prompts), "backward")
    assert changed(before, after) == [("prop", f) for f in range(1001, 1007)]


def test_both_reuses_the_forward_pass_and_keys_the_rest_on_everything():
    ctx = context()
    both, forward = ctx.targets("both"), ctx.targets("forward")
    assert all(both["hero"][f] == forward["hero"][f] for f in range(1005, 1021))
    assert {both["hero"][f][0] for f in range(1001, 1005)} == {"both-back"}
    after = context({"hero": {1005: point(10, 10), 1012: point(12, 13)}, "prop": {1008: point(50, 50)}})
    assert changed(keys(ctx, "both"), keys(after, "both")) == [
        ("hero", f) for f in list(range(1001, 1005)) + list(range(1012, 1021))
    ]


def test_an_input_frame_invalidates_the_mattes_that_saw_it():
    stamps = {f: "stamp%d" % f for f in FRAMES}
    before_f, before_b = keys(context(), "forward"), keys(context(), "backward")
    stamps[1010] = "re-rendered"
    after_f, after_b = keys(context(stamps=stamps), "forward"), keys(context(stamps=stamps), "backward")
    assert {f for _, f in changed(before_f, after_f)} == set(range(1010, 1021))
    assert {f for _, f in changed(before_b, after_b)} == set(range(1001, 1011))


@pytest.mark.parametrize(
    "change",
    [
        {"settings": {"edge": "hard"}},
        {"model": dict(MODEL, checkpoint_sha256="cd" * 32)},
        {"model": dict(MODEL, image_size=1024)},
    ],
)
def test_model_and_settings_invalidate_everything(change):
    before, after = keys(context(), "both"), keys(context(**change), "both")
    assert set(changed(before, after)) == set(before)


def test_preview_keys_depend_on_that_frame_only():
    ctx = context()
    k = ctx.key("hero", 1012, "preview")
    assert ctx.key("hero", 1013, "preview") is None  # no prompt there
    moved = context({"hero": {1005: point(99, 10), 1012: point(12, 12)}, "prop": {1008: point(50, 50)}})
    assert moved.key("hero", 1012, "preview") == k
    assert context({"hero": {1012: point(12, 11)}}).key("hero", 1012, "preview") != k


def test_prompts_outside_the_range_are_reported():
    assert context(first=1006).outside() == [("hero", 1005)]


def test_the_context_survives_json():
    ctx = context()
    again = KeyContext.from_json(json.loads(json.dumps(ctx.to_json())))
    assert keys(again, "both") == keys(ctx, "both")


# --- the cache folder ------------------------------------------------------------------------------
def matte(folder, name, text="matte"):
    path = os.path.join(str(folder), name)
    with open(path, "w") as f:
        f.write(text)
    return path


def track(cache, ctx, direction, staging):
    """What a Track does with the server's files: publish what is missing."""
    todo = cache.missing(ctx.targets(direction))
    for obj, per in todo.items():
        for frame, (kind, key) in per.items():
            assert cache.publish(obj, frame, kind, key, matte(staging, "%s.%d" % (obj, frame), key))
    cache.save()
    return todo


def stat(cache, obj, frame):
    st = os.stat(cache.published_path(obj, frame))
    return st.st_ino, st.st_mtime_ns


def test_published_mattes_are_where_the_reads_look(tmp_path):
    cache = MatteCache(str(tmp_path / "cache"))
    ctx = context()
    cache.update(ctx)
    track(cache, ctx, "forward", tmp_path)
    assert cache.read_pattern("hero") == str(tmp_path / "cache" / "hero" / "hero.####.exr")
    assert sorted(os.listdir(tmp_path / "cache" / "hero")) == [frame_name("hero", f) for f in range(1005, 1021)]
    assert frame_name("hero", 1001) == "hero.1001.exr" and frame_name("hero", -1) == "hero.-001.exr"


def test_a_change_puts_aside_exactly_the_affected_mattes_and_undo_brings_them_back(tmp_path):
    root = str(tmp_path / "cache")
    cache = MatteCache(root)
    ctx = context()
    cache.update(ctx)
    track(cache, ctx, "forward", tmp_path)
    untouched = {(o, f): stat(cache, o, f) for o in ("hero", "prop") for f in range(1005, 1021)}

    moved = ctx.replace(prompts={"hero": {1005: point(10, 10), 1012: point(30, 12)}, "prop": {1008: point(50, 50)}})
    assert cache.update(moved) == (9, 0)
    gone = [f for f in range(1005, 1021) if not os.path.exists(cache.published_path("hero", f))]
    assert gone == list(range(1012, 1021))
    kept = [(o, f) for (o, f) in untouched if not (o == "hero" and f >= 1012)]
    assert len(kept) == 23 and all(stat(cache, o, f) == untouched[(o, f)] for (o, f) in kept)
    # re-tracking makes only what is missing
    todo = track(cache, moved, "forward", tmp_path)
    assert todo == {"hero": {f: moved.targets("forward")["hero"][f] for f in range(1012, 1021)}}
    # undo (the handle back where it was): the first mattes come back without tracking
    assert cache.update(ctx) == (9, 9)
    assert open(cache.published_path("hero", 1015)).read() == ctx.key("hero", 1015, "forward")
    assert cache.missing(ctx.targets("forward")) == {}


def test_a_matte_made_for_old_prompts_goes_aside(tmp_path):
    cache = MatteCache(str(tmp_path / "cache"))
    ctx = context()
    cache.update(ctx)
    kind, key = ctx.targets("forward")["hero"][1015]
    cache.update(ctx.replace(prompts={"hero": {1005: point(1, 1)}}))  # the user moved on while it tracked
    assert not cache.publish("hero", 1015, kind, key, matte(tmp_path, "late"))
    assert not os.path.exists(cache.published_path("hero", 1015))
    assert cache.update(ctx) == (0, 1)  # and it is there when the prompts come back


def test_the_journal_keeps_what_a_crash_did_not_save(tmp_path):
    root = str(tmp_path / "cache")
    cache = MatteCache(root)
    ctx = context()
    cache.update(ctx)
    kind, key = ctx.targets("forward")["hero"][1006]
    cache.publish("hero", 1006, kind, key, matte(tmp_path, "m"))  # no save(): as if Nuke died here
    reopened = MatteCache(root)
    assert reopened.entry("hero", 1006) == (kind, key)
    os.unlink(reopened.published_path("hero", 1006))  # deleted by hand
    assert MatteCache(root).entry("hero", 1006) is None


def test_old_versions_aside_are_limited(tmp_path):
    cache = MatteCache(str(tmp_path / "cache"))
    ctx = context({"hero": {1005: point(0, 0)}})
    for i in range(cache_mod.STASH_PER_FRAME + 3):
        ctx = ctx.replace(prompts={"hero": {1005: point(i, 0)}})
        cache.update(ctx)
        kind, key = ctx.targets("forward")["hero"][1005]
        cache.publish("hero", 1005, kind, key, matte(tmp_path, "v%d" % i))
    cache.update(ctx.replace(prompts={}))
    aside = os.listdir(tmp_path / "cache" / ".stash" / "hero")
    assert len([n for n in aside if n.startswith("hero.1005.")]) == cache_mod.STASH_PER_FRAME
    assert cache.purge_stash() == cache_mod.STASH_PER_FRAME
    assert not os.path.exists(tmp_path / "cache" / ".stash")


def test_publishing_across_file_systems_copies(tmp_path, monkeypatch):
    cache = MatteCache(str(tmp_path / "cache"))
    ctx = context()
    cache.update(ctx)
    kind, key = ctx.targets("forward")["hero"][1007]
    src = matte(tmp_path, "from-tmp", "pixels")
    real_replace = os.replace

    def cross_device(a, b):
        if a == src:
            raise OSError(18, "Invalid cross-device link")
        return real_replace(a, b)

    monkeypatch.setattr(cache_mod.os, "replace", cross_device)
    assert cache.publish("hero", 1007, kind, key, src)
    assert open(cache.published_path("hero", 1007)).read() == "pixels" and not os.path.exists(src)
