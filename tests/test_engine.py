"""The streaming engine against sam2's own SAM2VideoPredictor, and its memory staying flat."""

from __future__ import annotations

import resource
from unittest import mock

import numpy as np
import torch
from conftest import TEST_SIZE, write_exr

from mattebridge.core.engine.feed import ModelFeed
from mattebridge.core.engine.models import load_model
from mattebridge.core.engine.tracker import ObjectPrompt, StreamingTracker
from mattebridge.core.image.colour import DisplayTransform
from mattebridge.core.image.plate import read_header, read_plate
from mattebridge.core.matte.alpha import logits_over_data_window
from mattebridge.core.wire.sequence import frame_path

N = 20  # >= max_obj_ptrs_in_encoder, the condition for bit-identity with sam2's num_frames
A_FIRST, B_FIRST, A_FIX = 5, 8, 12


def _feed(pattern, count, first=1001):
    transform = DisplayTransform(
        "ocio://studio-config-latest", "ACEScg", "sRGB - Display", "ACES 2.0 - SDR 100 nits (Rec.709)"
    )
    paths = [frame_path(pattern, first + i) for i in range(count)]
    return ModelFeed(paths, read_plate, TEST_SIZE, transform)


def _prompts(width, height):
    a = ObjectPrompt(points=np.array([[480 / width, 300 / height]], np.float32), labels=np.array([1], np.int32))
    b = ObjectPrompt(box=np.array([100 / width, 150 / height, 300 / width, 450 / height], np.float32))
    fix = ObjectPrompt(
        points=np.array([[480 / width, 300 / height], [700 / width, 100 / height]], np.float32),
        labels=np.array([1, 0], np.int32),
    )
    return a, b, fix


def test_streaming_engine_equals_sam2_video_predictor(checkpoint, bedroom_plate):
    geometry = read_header(frame_path(bedroom_plate, 1001))
    width, height = geometry.display_size
    a, b, fix = _prompts(width, height)
    feed = _feed(bedroom_plate, N)

    # sam2's own predictor, fed exactly the frames the streaming engine sees
    reference = load_model(checkpoint=checkpoint, config="sam2.1_hiera_t", image_size=TEST_SIZE, device="cpu").predictor
    images = torch.stack([feed[i] for i in range(N)])
    with mock.patch("sam2.sam2_video_predictor.load_video_frames", return_value=(images, height, width)):
        state = reference.init_state("unused")
    to_px = np.array([width, height], np.float32)
    reference.add_new_points_or_box(state, A_FIRST, "a", points=a.points * to_px, labels=a.labels)
    reference.add_new_points_or_box(state, B_FIRST, "b", box=b.box * np.tile(to_px, 2))
    expected = []  # (frame index, {obj: logits at display resolution}) in emission order

    def collect(gen, stop_before=None):
        for index, obj_ids, masks in gen:
            if index == stop_before:
                break
            expected.append((index, {o: masks[k, 0].numpy() for k, o in enumerate(obj_ids)}))

    collect(reference.propagate_in_video(state, A_FIRST, A_FIX - A_FIRST), stop_before=A_FIX)
    reference.add_new_points_or_box(state, A_FIX, "a", points=fix.points * to_px, labels=fix.labels)
    collect(reference.propagate_in_video(state, A_FIX, N - 1 - A_FIX))
    collect(reference.propagate_in_video(state, A_FIRST, A_FIRST, reverse=True))

    # the streaming engine: same calls, through its own API, with pruned state
    model = load_model(checkpoint=checkpoint, config="sam2.1_hiera_t", image_size=TEST_SIZE, device="cpu")
    tracker = StreamingTracker(model.predictor, _feed(bedroom_plate, N), N)
    tracker.add_prompt(A_FIRST, "a", a)
    tracker.add_prompt(B_FIRST, "b", b)
    got = list(tracker.propagate(A_FIRST, N - 1, corrections={A_FIX: [("a", fix)]}))
    got += list(tracker.propagate(A_FIRST, 0, reverse=True))

    assert [i for i, _ in expected] == [r.index for r in got]
    assert len(got) == N + 1  # frame A_FIRST is emitted by both passes
    for (index, ref), result in zip(expected, got):
        assert set(ref) == set(result.logits) == {"a", "b"}
        for obj in ref:
            ours = logits_over_data_window(result.logits[obj], geometry)
            np.testing.assert_allclose(ours, ref[obj], atol=1e-4, err_msg=f"frame {index} object {obj}")


def test_correction_changes_the_tracked_result(checkpoint, bedroom_plate):
    geometry = read_header(frame_path(bedroom_plate, 1001))
    a, _, fix = _prompts(*geometry.display_size)
    model = load_model(checkpoint=checkpoint, config="sam2.1_hiera_t", image_size=TEST_SIZE, device="cpu")
    plain = StreamingTracker(model.predictor, _feed(bedroom_plate, 16), 16)
    plain.add_prompt(0, "a", a)
    uncorrected = {r.index: r.logits["a"] for r in plain.propagate(0, 15)}
    fixed = StreamingTracker(model.predictor, _feed(bedroom_plate, 16), 16)
    fixed.add_prompt(0, "a", a)
    corrected = {r.index: r.logits["a"] for r in fixed.propagate(0, 15, corrections={10: [("a", fix)]})}
    for i in range(10):
        np.testing.assert_array_equal(corrected[i], uncorrected[i])
    assert all(np.abs(corrected[i] - uncorrected[i]).max() > 1e-3 for i in range(10, 16))
    # and it stays a conditioning frame (in force), not forgotten by the pass that follows it
    assert 10 in fixed.state["output_dict_per_obj"][0]["cond_frame_outputs"]


def test_long_shot_memory_is_flat(checkpoint, tmp_path):
    """300 frames at 256: held per-frame state and peak RSS do not grow with shot length."""
    rng = np.random.default_rng(0)
    for k in range(4):  # four real EXRs, the shot's 300 frames link to them in turn
        write_exr(tmp_path / f"src{k}.exr", {c: rng.random((96, 160)).astype(np.float32) for c in "RGB"})
    for i in range(300):
        (tmp_path / f"plate.{1001 + i}.exr").symlink_to(tmp_path / f"src{i % 4}.exr")
    model = load_model(checkpoint=checkpoint, config="sam2.1_hiera_t", image_size=TEST_SIZE, device="cpu")
    tracker = StreamingTracker(model.predictor, _feed(str(tmp_path / "plate.####.exr"), 300), 300)
    tracker.add_prompt(0, "a", ObjectPrompt(points=np.array([[0.5, 0.5]], np.float32), labels=np.array([1], np.int32)))
    held, peak = {}, {}
    for result in tracker.propagate(0, 299):
        held[result.index] = tracker.state_frames()
        peak[result.index] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    # the conditioning frame, what lies within reach of it, and what lies within reach of the current frame
    assert max(held.values()) <= 2 * (tracker.reach + 1)
    assert held[299] == held[60]
    assert peak[299] - peak[60] < 64 * 1024, (
        f"peak RSS grew {(peak[299] - peak[60]) / 1024:.0f} MiB from frame 60 to 299"
    )
