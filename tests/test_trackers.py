"""transformers' video trackers behind the engine interface: the streaming wrapper against the library's own
video inference, corrections in force, memory flat in shot length, preprocessing equal to the processor's.

Models are tiny random-initialised configs of the real classes, written with save_pretrained and read back
through the real loader (load_pretrained: from_pretrained on the local folder). EdgeTAM's published weights
use a timm RepViT backbone (timm imports torchvision, which does not import beside the CPU torch build);
EdgeTamVideoConfig's own default vision config is the Hiera one, which is what its tiny config uses here.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from mattebridge.core.engine import transformers_tracker as tt
from mattebridge.core.engine.interface import Tracker
from mattebridge.core.engine.tracker import ObjectPrompt
from mattebridge.core.errors import MatteBridgeError
from mattebridge.core.paths import plain_mode

S = 128  # model input size: the feature grid is S / 16 = 8
H = 128  # hidden size (the library fixes the memory channels at 64 and needs them smaller than this)
N = 20
A_FIRST, B_FIRST, A_FIX = 5, 8, 12

SMALL = dict(
    image_size=S,
    initializer_range=0.1,  # the default 0.02 gives logits of about 1e-3, too small to compare at 1e-4
    num_maskmem=3,
    max_object_pointers_in_encoder=4,
    memory_attention_hidden_size=H,
    memory_attention_num_layers=1,
    memory_encoder_hidden_size=H,
    mask_downsampler_embed_dim=H,
    memory_fuser_embed_dim=H,
    memory_fuser_num_layers=1,
    memory_fuser_intermediate_dim=64,
)
DECODER = dict(hidden_size=H, num_hidden_layers=1, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=16)


def _hiera_vision(size):
    g = size // 16
    return dict(
        model_type="sam2_vision_model",
        backbone_channel_list=[128, 64, 32, 16],
        fpn_hidden_size=H,
        backbone_feature_sizes=[[4 * g, 4 * g], [2 * g, 2 * g], [g, g]],
        backbone_config=dict(
            model_type="sam2_hiera_det_model",
            image_size=[size, size],
            hidden_size=16,
            blocks_per_stage=[1, 1, 2, 1],
            embed_dim_per_stage=[16, 32, 64, 128],
            num_attention_heads_per_stage=[1, 1, 1, 1],
            global_attention_blocks=[3],  # not a stage's first block: the library's q-pooling needs a window there
            window_size_per_stage=[8, 4, 4, 2],
        ),
    )


def tiny_config(family: str):
    from transformers import EdgeTamVideoConfig, Sam2VideoConfig, Sam3TrackerVideoConfig

    g = S // 16
    common = dict(SMALL, prompt_encoder_config=dict(image_size=S, hidden_size=H), mask_decoder_config=DECODER)
    if family == "sam2_video":
        return Sam2VideoConfig(
            vision_config=_hiera_vision(S),
            memory_attention_rope_feat_sizes=[g, g],
            memory_attention_feed_forward_hidden_size=64,
            **common,
        )
    if family == "edgetam_video":
        return EdgeTamVideoConfig(
            vision_config=_hiera_vision(S),
            memory_attention_rope_feat_sizes=[g, g],
            memory_attention_rope_k_sizes=[4, 4],
            memory_attention_mlp_hidden_size=64,
            perceiver_resampler_num_latents=16,
            perceiver_resampler_num_latents_2d=16,
            perceiver_resampler_mlp_intermediate_size=64,
            perceiver_resampler_num_layers=1,
            **common,
        )
    patch = 14  # SAM 3's ViT: patch 14, so the input is 14 * grid
    size = patch * g
    common.update(image_size=size, prompt_encoder_config=dict(image_size=size, hidden_size=H))
    vision = dict(
        model_type="sam3_vision_model",
        fpn_hidden_size=H,
        backbone_feature_sizes=[[4 * g, 4 * g], [2 * g, 2 * g], [g, g]],
        backbone_config=dict(
            model_type="sam3_vit_model",
            image_size=size,
            patch_size=patch,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            window_size=4,
            global_attn_indexes=[1],
            pretrain_image_size=size,
        ),
    )
    return Sam3TrackerVideoConfig(
        vision_config=vision,
        memory_attention_rope_feat_sizes=[g, g],
        memory_attention_feed_forward_hidden_size=64,
        **common,
    )


FAMILIES = list(tt.FAMILIES)


@pytest.fixture(scope="module", params=FAMILIES)
def model_dir(request, tmp_path_factory):
    model_cls, _ = tt.family_classes(request.param)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp(request.param)
    tiny_model(model_cls, request.param).save_pretrained(folder)
    return str(folder)


def tiny_model(model_cls, family):
    model = model_cls(tiny_config(family))
    # random heads score objects near 0, and an absent object's mask is a constant -1024: bias the presence
    # score up so the masks compared below are real logits
    torch.nn.init.constant_(model.mask_decoder.pred_obj_score_head.proj_out.bias, 2.0)
    return model


@pytest.fixture(scope="module")
def model(model_dir):
    return tt.load_pretrained(model_dir, "cpu")


class Feed:
    """Normalised (3, S, S) frames made on demand (a moving bright square on noise); counts reads."""

    def __init__(self, size, count):
        self.size, self.count, self.reads = size, count, 0

    def __len__(self):
        return self.count

    def __getitem__(self, i):
        if not 0 <= i < self.count:
            raise IndexError(i)
        self.reads += 1
        g = torch.Generator().manual_seed(i)
        frame = torch.randn(3, self.size, self.size, generator=g) * 0.3
        x = 10 + (i * 3) % (self.size // 2)
        frame[:, 30:70, x : x + 40] += 1.5
        return frame


def _prompts():
    a = ObjectPrompt(points=np.array([[0.35, 0.4]], np.float32), labels=np.array([1], np.int32))
    b = ObjectPrompt(box=np.array([0.55, 0.5, 0.9, 0.95], np.float32))
    fix = ObjectPrompt(points=np.array([[0.35, 0.4], [0.8, 0.1]], np.float32), labels=np.array([1, 0], np.int32))
    return a, b, fix


def _processor(size):
    """The library's own video processor for prompts. Its image and video processors need torchvision; the
    prompt path reads only target_size and the pad value, so it is built without them."""
    from transformers import Sam2VideoProcessor

    processor = Sam2VideoProcessor.__new__(Sam2VideoProcessor)
    processor.target_size, processor.point_pad_value = size, -10
    return processor


def test_streaming_wrapper_equals_the_library_video_inference(model):
    """Two objects and a correction, forward then backward: every frame within 1e-4 of the library's own
    session + propagate_in_video_iterator over the whole video."""
    _, session_cls = tt.family_classes(model.config.model_type)
    size = model.config.image_size
    a, b, fix = _prompts()
    feed = Feed(size, N)

    # the library's own video inference, the whole video handed over up front
    session = session_cls(
        video=torch.stack([feed[i] for i in range(N)]), video_height=size, video_width=size, dtype=torch.float32
    )
    processor = _processor(size)
    px = size  # the processor takes pixels of the original size; ours is the model's size
    processor.add_inputs_to_inference_session(
        session, A_FIRST, ["a"], input_points=[[(a.points * px).tolist()]], input_labels=[[a.labels.tolist()]],
        original_size=(size, size),
    )  # fmt: skip
    model(session, frame_idx=A_FIRST)
    processor.add_inputs_to_inference_session(
        session, B_FIRST, ["b"], input_boxes=[[(b.box * px).tolist()]], original_size=(size, size)
    )
    model(session, frame_idx=B_FIRST)
    expected = []

    def collect(outputs, skip=None):
        for out in outputs:
            if out.frame_idx != skip:
                expected.append((out.frame_idx, dict(zip(out.object_ids, out.pred_masks[:, 0].numpy()))))

    with torch.inference_mode():
        collect(model.propagate_in_video_iterator(session, A_FIRST, A_FIX - A_FIRST), skip=A_FIX)
        processor.add_inputs_to_inference_session(
            session, A_FIX, ["a"], input_points=[[(fix.points * px).tolist()]], input_labels=[[fix.labels.tolist()]],
            original_size=(size, size),
        )  # fmt: skip
        collect([model(session, frame_idx=A_FIX)])
        tt.promote(session, session.obj_id_to_idx("a"), A_FIX)  # ours: the correction stays in force
        collect(model.propagate_in_video_iterator(session, A_FIX + 1, N - 1 - (A_FIX + 1)))
        collect(model.propagate_in_video_iterator(session, A_FIRST, A_FIRST, reverse=True))

    # the streaming wrapper: same calls through the engine interface, frames read lazily, state pruned
    stream = Feed(size, N)
    tracker = tt.TransformersTracker(model, stream, N)
    assert isinstance(tracker, Tracker)
    tracker.add_prompt(A_FIRST, "a", a)
    tracker.add_prompt(B_FIRST, "b", b)
    got = list(tracker.propagate(A_FIRST, N - 1, corrections={A_FIX: [("a", fix)]}))
    got += list(tracker.propagate(A_FIRST, 0, reverse=True))

    assert [i for i, _ in expected] == [r.index for r in got] == list(range(A_FIRST, N)) + list(range(A_FIRST, -1, -1))
    for (index, ref), result in zip(expected, got):
        assert set(ref) == set(result.logits) == {"a", "b"}
        for obj in ref:
            assert result.logits[obj].shape == (tracker.mask_size, tracker.mask_size)
            np.testing.assert_allclose(result.logits[obj], ref[obj], atol=1e-4, err_msg=f"frame {index} {obj}")
        assert set(result.scores) == {"a", "b"} and all(np.isfinite(list(result.scores.values())))
        assert set(result.ious) == {"a", "b"} and all(0 < v < 2 for v in result.ious.values())
    masks = [ref[o] for _, ref in expected for o in ref]
    assert sum(np.ptp(m) > 0.1 for m in masks) > 0.8 * len(masks)  # real logits, not an absent object's -1024
    assert stream.reads < 2 * (N + A_FIRST + 1)  # each pass reads each frame it tracks, a click reads its frame
    # the correction is a conditioning frame, so the backward pass and any later one keep it
    assert A_FIX in tracker.session.output_dict_per_obj[0]["cond_frame_outputs"]


def test_correction_changes_what_follows_and_stays(model):
    size = model.config.image_size
    a, _, fix = _prompts()
    plain = tt.TransformersTracker(model, Feed(size, 16), 16)
    plain.add_prompt(0, "a", a)
    uncorrected = {r.index: r.logits["a"] for r in plain.propagate(0, 15)}
    fixed = tt.TransformersTracker(model, Feed(size, 16), 16)
    fixed.add_prompt(0, "a", a)
    corrected = {r.index: r.logits["a"] for r in fixed.propagate(0, 15, corrections={10: [("a", fix)]})}
    assert sorted(corrected) == list(range(16))
    for i in range(10):
        np.testing.assert_array_equal(corrected[i], uncorrected[i])
    assert all(np.abs(corrected[i] - uncorrected[i]).max() > 1e-3 for i in range(10, 16))
    # a second pass over the corrected frame reuses it rather than tracking it again without the clicks
    again = {r.index: r.logits["a"] for r in fixed.propagate(0, 15)}
    np.testing.assert_array_equal(again[10], corrected[10])


def test_backward_pass_and_both_directions(model):
    size = model.config.image_size
    a, _, fix = _prompts()
    tracker = tt.TransformersTracker(model, Feed(size, 12), 12)
    tracker.add_prompt(6, "a", a)
    back = [r.index for r in tracker.propagate(6, 0, reverse=True, corrections={2: [("a", fix)]})]
    assert back == [6, 5, 4, 3, 2, 1, 0]
    assert 2 in tracker.session.output_dict_per_obj[0]["cond_frame_outputs"]
    assert tracker.session.frames_tracked_per_obj[0][3] == {"reverse": True}
    forward = [r.index for r in tracker.propagate(6, 11)]
    assert forward == [6, 7, 8, 9, 10, 11]
    # frame 0 as a start: the library skips a reverse pass there, the result is still emitted
    assert [r.index for r in tracker.propagate(0, 0, reverse=True)] == [0]


def test_mask_prompt_is_the_output_and_has_no_iou(model):
    size = model.config.image_size
    tracker = tt.TransformersTracker(model, Feed(size, 4), 4)
    mask = np.zeros((90, 160), bool)  # a display window of another shape: resized like the processor does
    mask[20:60, 40:120] = True
    out = tracker.add_prompt(0, "m", ObjectPrompt(mask=mask))
    assert out.ious == {} and out.scores["m"] > 0
    inside = out.logits["m"][size // 4 * 30 // 90, size // 4 * 80 // 160]
    outside = out.logits["m"][2, 2]
    assert inside > 0 > outside
    assert [r.index for r in tracker.propagate(0, 3)] == [0, 1, 2, 3]


@pytest.mark.parametrize("frames", [30, 300])
def test_memory_is_flat_in_shot_length(model, frames):
    """Held per-frame state stops growing once the pass is past the model's reach, at 30 and at 300 frames."""
    size = model.config.image_size
    a, _, _ = _prompts()
    tracker = tt.TransformersTracker(model, Feed(size, frames), frames)
    tracker.add_prompt(0, "a", a)
    held = {r.index: tracker.state_frames() for r in tracker.propagate(0, frames - 1)}
    bound = 2 * (tracker.reach + 1) + 1  # the conditioning frame, what is within reach of it and of the current one
    assert max(held.values()) <= bound
    assert held[frames - 1] == held[2 * tracker.reach + 2]
    assert len(tracker.session.frames_tracked_per_obj[0].spans) == 1
    assert tracker.session.num_frames == frames and len(tracker.session.cache._vision_features) <= 1
    tracker.close()
    assert tracker.state_frames() == 0


def test_prompts_equal_the_processor(model):
    """Points, labels, a box with clicks, and a mask: what the engine stores equals what the library's
    processor stores for the same prompt given in pixels of the model's size."""
    _, session_cls = tt.family_classes(model.config.model_type)
    size = model.config.image_size
    processor = _processor(size)
    session = session_cls(video_height=size, video_width=size, dtype=torch.float32)
    prompt = ObjectPrompt(
        points=np.array([[0.25, 0.5], [0.75, 0.125]], np.float32),
        labels=np.array([1, 0], np.int32),
        box=np.array([0.1, 0.2, 0.6, 0.9], np.float32),
    )
    processor.add_inputs_to_inference_session(
        session, 3, ["x"], input_points=[[(prompt.points * size).tolist()]], input_labels=[[prompt.labels.tolist()]],
        input_boxes=[[(prompt.box * size).tolist()]], original_size=(size, size),
    )  # fmt: skip
    theirs = session.point_inputs_per_obj[0][3]
    ours = tt.prompt_inputs(prompt, size)
    torch.testing.assert_close(ours["point_coords"], theirs["point_coords"].float())
    assert ours["point_labels"].tolist() == theirs["point_labels"].tolist() == [[[2, 3, 1, 0]]]
    mask = np.zeros((200, 300), bool)
    mask[50:150, 30:200] = True
    processor.add_inputs_to_inference_session(session, 4, ["x"], input_masks=mask)
    torch.testing.assert_close(tt.mask_input(mask, size), session.mask_inputs_per_obj[0][4])


def test_feed_normalisation_is_the_processors():
    """The feed's ImageNet normalisation is the SAM-family video processors' (their class constants)."""
    from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
    from transformers.models.sam2_video.video_processing_sam2_video import Sam2VideoVideoProcessor

    from mattebridge.core.engine.feed import MEAN, STD

    assert Sam2VideoVideoProcessor.image_mean == IMAGENET_DEFAULT_MEAN
    assert Sam2VideoVideoProcessor.image_std == IMAGENET_DEFAULT_STD
    assert Sam2VideoVideoProcessor.do_rescale and Sam2VideoVideoProcessor.do_normalize
    np.testing.assert_allclose(MEAN, IMAGENET_DEFAULT_MEAN, rtol=1e-6)
    np.testing.assert_allclose(STD, IMAGENET_DEFAULT_STD, rtol=1e-6)


def test_tracked_spans_behave_as_the_dict_they_replace():
    spans = tt.TrackedSpans()
    for f in range(10, 20):
        spans[f] = {"reverse": False}
    for f in range(9, 4, -1):
        spans[f] = {"reverse": True}
    assert spans.spans == [[5, 9, True], [10, 19, False]]
    assert 12 in spans and 4 not in spans and 20 not in spans and len(spans) == 15
    assert spans[7] == {"reverse": True} and spans.get(30) is None
    spans[12] = {"reverse": True}  # tracked again the other way
    assert spans.spans == [[5, 9, True], [10, 11, False], [12, 12, True], [13, 19, False]]
    del spans[15]
    assert 15 not in spans and list(spans) == [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16, 17, 18, 19]


def test_unsupported_folder_and_missing_library_are_one_line(tmp_path, monkeypatch):
    with pytest.raises(MatteBridgeError, match="not a transformers model folder"):
        tt.load_pretrained(str(tmp_path))
    (tmp_path / "config.json").write_text('{"model_type": "sam2"}')
    with pytest.raises(MatteBridgeError, match="not a supported video tracker"):
        tt.load_pretrained(str(tmp_path))
    import builtins

    real_import = builtins.__import__

    def no_transformers(name, *args, **kwargs):
        if name == "transformers" or name.startswith("transformers."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_transformers)
    with pytest.raises(MatteBridgeError, match=r"mattebridge\[trackers\]") as e:
        tt.load_pretrained(str(tmp_path))
    assert "\n" not in str(e.value)


# --- the catalogue: every family listed, local copies, downloads pinned and verified ------------------------


def test_catalogue_lists_every_family_with_licence_source_and_presence(tmp_path, monkeypatch):
    from mattebridge.core.engine import catalog

    monkeypatch.setenv("MATTEBRIDGE_MODELS", str(tmp_path))
    rows = {r["name"]: r for r in catalog.listing()}
    assert {"sam2.1_hiera_tiny", "sam2.1_hiera_large", "sam3-tracker", "edgetam"} <= set(rows)
    assert {r["family"] for r in rows.values()} >= {"sam2.1", "sam3-tracker", "edgetam"}
    assert rows["sam3-tracker"]["licence"].startswith("SAM License") and "gated" in rows["sam3-tracker"]["licence"]
    assert rows["edgetam"]["licence"] == "Apache-2.0" and rows["sam2.1_hiera_tiny"]["licence"] == "Apache-2.0"
    assert all(r["source"].startswith("https://") and r["size"] and r["present"] is False for r in rows.values())
    (tmp_path / "sam2.1_hiera_tiny.pt").write_bytes(b"x")
    assert {r["name"]: r["present"] for r in catalog.listing()}["sam2.1_hiera_tiny"] is True
    with pytest.raises(MatteBridgeError, match="unknown model 'nope'; models: sam2.1_hiera_tiny"):
        catalog.entry("nope")
    with pytest.raises(MatteBridgeError, match="mattebridge models download edgetam"):
        catalog.load_engine("edgetam")


def test_local_checkpoint_folder_is_an_engine(model_dir):
    """--checkpoint DIR: a machine without internet loads a local copy; its identity is its weights' hash."""
    from mattebridge.core.engine import catalog
    from mattebridge.core.engine.interface import Engine

    engine = catalog.load_engine("ignored", checkpoint=model_dir, device="cpu")
    assert isinstance(engine, Engine) and engine.family == engine.model.config.model_type
    again = catalog.load_engine("ignored", checkpoint=model_dir, device="cpu")
    assert engine.sha256 == again.sha256 and len(engine.sha256) == 64
    tracker = engine.tracker(Feed(engine.image_size, 3), 3)
    tracker.add_prompt(0, "a", _prompts()[0])
    assert [r.index for r in tracker.propagate(0, 2)] == [0, 1, 2]


class FakeHub:
    """huggingface_hub's two calls, answered from a local folder as the hub would for one commit."""

    def __init__(self, source, commit="c0ffee" * 6 + "abcd", tamper=False):
        self.source, self.commit, self.tamper, self.calls = source, commit, tamper, []
        hub = self

        class HfApi:
            def model_info(self, repo, revision=None, files_metadata=False, token=None):
                hub.calls.append(("info", repo, revision, token))
                siblings = []
                for n in sorted(os.listdir(hub.source)):
                    lfs = type("L", (), {"sha256": sha256(hub.source / n)}) if n.endswith(".safetensors") else None
                    siblings.append(type("S", (), {"rfilename": n, "lfs": lfs}))
                siblings.append(type("S", (), {"rfilename": "README.md", "lfs": None}))
                return type("I", (), {"sha": hub.commit, "siblings": siblings})

        self.HfApi = HfApi

    def snapshot_download(self, repo, revision, local_dir, allow_patterns, token):
        self.calls.append(("download", repo, revision, tuple(sorted(allow_patterns)), token))
        for n in allow_patterns:
            data = (self.source / n).read_bytes()
            if self.tamper and n.endswith(".safetensors"):
                data = data[:-1] + bytes([data[-1] ^ 1])
            (Path(local_dir) / n).write_bytes(data)
        return local_dir


def sha256(path):
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_download_pins_the_commit_verifies_files_and_loads(model_dir, tmp_path, monkeypatch):
    from mattebridge.core.engine import catalog

    name = {e.model_type: e.name for e in catalog.HUB_ENTRIES}[tt.load_pretrained(model_dir).config.model_type]
    repo = catalog.entry(name).repo
    monkeypatch.setenv("MATTEBRIDGE_MODELS", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    bad = FakeHub(Path(model_dir), tamper=True)
    monkeypatch.setattr(catalog, "_hub", lambda: bad)
    with pytest.raises(MatteBridgeError, match="SHA-256 mismatch"):
        catalog.download(name)
    assert not catalog.present(name) and os.listdir(tmp_path / "cache") == []  # nothing half-written stays

    hub = FakeHub(Path(model_dir))
    monkeypatch.setattr(catalog, "_hub", lambda: hub)
    folder = catalog.download(name)
    assert catalog.present(name)
    (_, asked, rev, token), (_, _, pinned, files, _) = hub.calls
    assert (asked, rev, token) == (repo, "main", "hf_test")
    assert pinned == hub.commit and "README.md" not in files  # the resolved commit, only config and weights
    manifest = catalog.verify_folder(folder)
    assert manifest["revision"] == hub.commit and manifest["repo"] == repo
    assert stat.S_IMODE(os.stat(folder).st_mode) == plain_mode(folder=True)  # not mkdtemp's 0700
    engine = catalog.load_engine(name, device="cpu")
    assert engine.name == name and engine.sha256 == catalog.weights_sha256(manifest)
    assert catalog.download(name) == folder and len(hub.calls) == 2  # present: verified, not fetched again

    weights = next(Path(folder).glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(MatteBridgeError, match="SHA-256 differs from the download's"):
        catalog.load_engine(name, device="cpu")


def test_every_tracker_runs_the_same_track_and_server_pipeline(model_dir, bedroom_plate, tmp_path):
    """Nothing above the engine knows the tracker: `track --checkpoint DIR` writes the same kind of mattes (the
    plate's geometry, scores, the model's identity in the header), and `serve` answers clicks and propagations."""
    from conftest import ServerProcess, read_exr, run_cli

    from mattebridge.core.wire.client import Client

    base = ["--frames", "1001-1003", "--point", "300,300@1001", "--colorspace", "ACEScg", "--device", "cpu"]
    out = tmp_path / "m" / "hero.####.exr"
    code, _, err = run_cli(
        "track", bedroom_plate, *base, "--checkpoint", model_dir, "--out", out, "--report", tmp_path / "qc"
    )
    assert code == 0, err
    pixels, spec = read_exr(tmp_path / "m" / "hero.1002.exr")
    assert pixels.shape == (540, 960, 1) and 0 <= pixels.min() and pixels.max() <= 1
    assert spec.get_string_attribute("mattebridge/model") == os.path.basename(model_dir)
    assert np.isfinite(float(spec.get_string_attribute("mattebridge/objectScore")))
    assert (tmp_path / "qc.csv").exists()

    server = ServerProcess(model_dir, tmp_path)  # --checkpoint DIR: the sam2-only flags it also gets are not used
    try:
        with Client(server.address, timeout=60) as client:
            info = client.hello()
            assert info["family"] == tt.load_pretrained(model_dir, "cpu").config.model_type
            clip = client.open_clip(bedroom_plate, "1001-1003", colorspace="ACEScg")
            matte = clip.prompt(1001, "hero", points=[(300, 300, True)], edge="raw")
            assert matte.alpha["hero"].shape == (540, 960)
            results = list(clip.propagate(direction="forward", out=str(tmp_path / "s" / "{object}.####.exr")))
            assert sorted(r.frame for r in results) == [1001, 1002, 1003]
    finally:
        server.stop()
