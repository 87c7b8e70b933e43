"""Trackers from `transformers`' video models (SAM 3 tracker, EdgeTAM, SAM 2.1's port) frame by frame with
bounded state: the same contract as the sam2 engine (core/engine/interface.py, docs/trackers.md).

The library's own `forward` and `propagate_in_video_iterator` run on its own inference session, changed in
three ways only: `processed_frames` is a lazy view of our feed (nothing decoded up front), the per-frame
outputs are pruned to what the model can still attend to, and the frames-tracked record is kept as spans.
So results are those of the library's video inference on the same call sequence (tests/test_trackers.py).

Two things follow sam2's semantics rather than the library's, because a compositor's correction must stay:
a prompt on a frame a pass has tracked is computed with that frame's memory (the library's own path for a
tracked frame) and then kept as a conditioning frame, so no later pass recomputes it away; and the model's
predicted IoU of each chosen mask is kept with the frame's output (the library computes and drops it).
Preprocessing is ours too: the feed's (3, S, S) ImageNet-normalised tensors are what the SAM-family video
processors produce (they need torchvision, which the CPU torch build cannot import), and prompts are
scaled to S exactly as their `add_inputs_to_inference_session` does.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, MutableMapping
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch

from mattebridge.core.engine.tracker import (
    ObjectPrompt,
    TrackerOutput,
    compute_context,
    corrected_passes,
    keep_output,
)
from mattebridge.core.errors import MatteBridgeError

# config.model_type -> (model class, inference session class), all in the model type's modeling module
FAMILIES = {
    "sam2_video": ("Sam2VideoModel", "Sam2VideoInferenceSession"),
    "sam3_tracker_video": ("Sam3TrackerVideoModel", "Sam3TrackerVideoInferenceSession"),
    "edgetam_video": ("EdgeTamVideoModel", "EdgeTamVideoInferenceSession"),
}
EXTRA_HINT = "install the trackers extra (Python >= 3.11): pip install 'mattebridge[trackers]', or scripts/setup.sh"
# Corrections accumulate as conditioning frames: bound how many a frame attends to, as the sam2 engine does.
MAX_COND_FRAMES_IN_ATTN = 8


def require_transformers(what: str):
    try:
        import transformers
    except ImportError:
        raise MatteBridgeError(f"{what} needs transformers; {EXTRA_HINT}") from None
    return transformers


def family_classes(model_type: str):
    """(model class, session class) for a config's model_type."""
    if model_type not in FAMILIES:
        raise MatteBridgeError(
            f"model type {model_type!r} is not a supported video tracker (supported: {', '.join(FAMILIES)})"
        )
    require_transformers(model_type)
    model_name, session_name = FAMILIES[model_type]
    module = importlib.import_module(f"transformers.models.{model_type}.modeling_{model_type}")
    return getattr(module, model_name), getattr(module, session_name)


def load_pretrained(folder: str, device="cpu", model_type: Optional[str] = None):
    """A video model from a local folder (config.json + safetensors), through the library's own loader.
    `model_type` picks the video class where the folder holds more (facebook/sam3: detector and tracker)."""
    transformers = require_transformers(folder)
    try:
        config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as e:
        raise MatteBridgeError(f"{folder}: not a transformers model folder ({str(e).splitlines()[0][:200]})") from None
    model_cls, _ = family_classes(model_type or config.model_type)
    overrides = {}
    if getattr(config, "max_cond_frame_num", None) == -1:
        overrides["max_cond_frame_num"] = MAX_COND_FRAMES_IN_ATTN
    try:
        model = model_cls.from_pretrained(folder, local_files_only=True, **overrides)
    except ImportError as e:  # EdgeTAM's backbone is timm's, which imports torchvision
        raise MatteBridgeError(f"{folder}: {str(e).strip().splitlines()[0][:200]}; {EXTRA_HINT}") from None
    except (OSError, ValueError, RuntimeError) as e:
        raise MatteBridgeError(f"{folder}: weights do not load ({str(e).strip().splitlines()[0][:200]})") from None
    keep_iou(model)
    return model.eval().to(device)


def keep_iou(model) -> None:
    """Keep each frame's predicted IoU with its output ("iou"), per model: the mask decoder's scores, seen by a
    forward hook, read back by a wrapper around the one per-object step (None for mask prompts: no prediction)."""
    if getattr(model, "_mattebridge_keeps_iou", False):
        return
    seen = {}

    def hook(module, args, output):
        seen["iou"] = output[1]  # (low-res masks, iou scores, output tokens, object scores)

    model.mask_decoder.register_forward_hook(hook)
    step = model._run_single_frame_inference

    def step_keeping_iou(*args, **kwargs):
        seen["iou"] = None
        out = step(*args, **kwargs)
        ious = seen["iou"]
        masked = kwargs.get("mask_inputs") is not None
        out["iou"] = None if masked or ious is None else float(ious.float().max())  # the chosen mask is the best
        return out

    model._run_single_frame_inference = step_keeping_iou
    model._mattebridge_keeps_iou = True


class LazyFrames(Mapping):
    """The session's `processed_frames`: frame i is read from the feed when the model asks, never stored."""

    def __init__(self, images: Sequence, num_frames: int):
        self.images, self.num_frames = images, num_frames

    def __getitem__(self, index: int):
        if not 0 <= index < self.num_frames:
            raise KeyError(index)
        return self.images[index]

    def __len__(self) -> int:
        return self.num_frames

    def __iter__(self):
        return iter(range(self.num_frames))


class TrackedSpans(MutableMapping):
    """The session's per-object `frames_tracked_per_obj` entry ({frame: {"reverse": bool}}) as runs of frames
    tracked in one direction: constant size for a pass of any length."""

    def __init__(self):
        self.spans: List[list] = []  # [first, last, reverse], sorted and disjoint

    def _find(self, frame: int):
        for k, (lo, hi, _) in enumerate(self.spans):
            if lo <= frame <= hi:
                return k
        return None

    def __getitem__(self, frame: int):
        k = self._find(frame)
        if k is None:
            raise KeyError(frame)
        return {"reverse": self.spans[k][2]}

    def __setitem__(self, frame: int, value) -> None:
        reverse = bool(value.get("reverse", False))
        if frame in self:
            if self[frame]["reverse"] == reverse:
                return
            del self[frame]
        self.spans.append([frame, frame, reverse])
        self.spans.sort()
        merged = []
        for span in self.spans:  # join neighbours tracked in the same direction
            if merged and merged[-1][1] + 1 == span[0] and merged[-1][2] == span[2]:
                merged[-1][1] = span[1]
            else:
                merged.append(span)
        self.spans = merged

    def __delitem__(self, frame: int) -> None:
        k = self._find(frame)
        if k is None:
            raise KeyError(frame)
        lo, hi, reverse = self.spans.pop(k)
        parts = [[lo, frame - 1, reverse]] if lo < frame else []
        parts += [[frame + 1, hi, reverse]] if frame < hi else []
        self.spans[k:k] = parts

    def __contains__(self, frame) -> bool:
        return self._find(frame) is not None

    def __iter__(self):
        for lo, hi, _ in self.spans:
            yield from range(lo, hi + 1)

    def __len__(self) -> int:
        return sum(hi - lo + 1 for lo, hi, _ in self.spans)


def prompt_inputs(prompt: ObjectPrompt, size: int) -> dict:
    """Points and box in normalised coordinates -> the session's point inputs at the model's size, as the
    library's processor builds them: the box first as two corner points labelled 2 and 3, then the clicks."""
    coords, labels = [], []
    if prompt.box is not None:
        coords.append(np.asarray(prompt.box, np.float64).reshape(2, 2))
        labels.append(np.array([2, 3]))
    if prompt.points is not None:
        coords.append(np.asarray(prompt.points, np.float64).reshape(-1, 2))
        labels.append(np.asarray(prompt.labels).reshape(-1))
    if not coords:
        raise MatteBridgeError("a prompt needs points, a box or a mask")
    points = torch.as_tensor(np.concatenate(coords) * size, dtype=torch.float32)
    return {
        "point_coords": points.reshape(1, 1, -1, 2),
        "point_labels": torch.as_tensor(np.concatenate(labels), dtype=torch.int32).reshape(1, 1, -1),
    }


def mask_input(mask: np.ndarray, size: int) -> torch.Tensor:
    """A display-window mask -> (1, 1, S, S) 0/1 at the model's size, as the library's processor resizes it."""
    m = torch.as_tensor(np.asarray(mask, bool), dtype=torch.float32)[None, None]
    if m.shape[-2:] != (size, size):
        m = torch.nn.functional.interpolate(m, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        m = (m >= 0.5).float()
    return m


class TransformersTracker:
    """One clip on a transformers video model (interface.Tracker)."""

    def __init__(self, model, images: Sequence, num_frames: int, device=None):
        _, session_cls = family_classes(model.config.model_type)
        keep_iou(model)
        self.model = model
        self.device = torch.device(device) if device is not None else model.device
        self.size = int(model.config.image_size)
        # logits come out at 4x the coarsest feature grid: S / 4 for Hiera, S / 3.5 for SAM 3's patch-14 ViT
        self.mask_size = int(model.prompt_encoder.mask_input_size[0])
        self.session = session_cls(
            video_height=self.size,
            video_width=self.size,
            inference_device=self.device,
            inference_state_device=self.device,
            video_storage_device=self.device,
            dtype=torch.float32,
            max_vision_features_cache_size=1,
        )
        self.session.processed_frames = LazyFrames(images, num_frames)
        config = model.config
        # how far (in processing order) a frame reaches back: memory frames and object pointers, stride 1
        self.reach = max(config.num_maskmem - 1, config.max_object_pointers_in_encoder - 1)

    # --- image features (a frame's encoder output, reusable across clicks on it) --------------------
    def image_features(self, index: int):
        return self.session.cache.get_vision_features(index)

    def reuse_image_features(self, index: int, features) -> None:
        self.session.cache.clear_all()
        self.session.cache.cache_vision_features(index, features)

    def _compute(self):
        return compute_context(self.device)

    def _object(self, obj: str) -> int:
        new = obj not in self.session._obj_id_to_idx
        idx = self.session.obj_id_to_idx(obj)
        if new:
            self.session.frames_tracked_per_obj[idx] = TrackedSpans()
        return idx

    # --- prompts ------------------------------------------------------------------------------
    def add_prompt(self, index: int, obj: str, prompt: ObjectPrompt) -> TrackerOutput:
        """Prompt `obj` on frame `index`; on a tracked frame it is a correction, kept as a conditioning frame."""
        idx = self._object(obj)
        session = self.session
        tracked = session.frames_tracked_per_obj[idx].get(index)
        if prompt.mask is not None:
            session.add_mask_inputs(idx, index, mask_input(prompt.mask, self.size))
            session.remove_point_inputs(idx, index)
        else:
            session.add_point_inputs(idx, index, prompt_inputs(prompt, self.size))
            session.remove_mask_inputs(idx, index)
        session.obj_with_new_inputs = [obj]
        with self._compute():
            self.model(session, frame_idx=index, reverse=bool(tracked and tracked["reverse"]))
        if tracked is not None:
            promote(session, idx, index)
        return self.result(index)

    def result(self, index: int) -> TrackerOutput:
        logits, scores, ious = {}, {}, {}
        for obj, idx in self.session._obj_id_to_idx.items():
            store = self.session.output_dict_per_obj[idx]
            out = store["cond_frame_outputs"].get(index) or store["non_cond_frame_outputs"].get(index)
            if out is not None:
                keep_output(obj, out, logits, scores, ious)
        return TrackerOutput(index, logits, scores, ious)

    # --- propagation --------------------------------------------------------------------------
    def propagate(
        self, start: int, stop: int, reverse: bool = False, corrections: Optional[Dict[int, List[tuple]]] = None
    ) -> Iterator[TrackerOutput]:
        return corrected_passes(self, start, stop, reverse, corrections, rerun_corrected=False)

    def _pass(self, start: int, stop: int, reverse: bool) -> Iterator[TrackerOutput]:
        if reverse and start == 0:  # the library skips a reverse pass that starts on frame 0
            yield self.result(0)
            return
        frames = self.model.propagate_in_video_iterator(
            self.session, start_frame_idx=start, max_frame_num_to_track=abs(stop - start), reverse=reverse
        )
        while True:
            with self._compute():
                item = next(frames, None)
            if item is None:
                return
            self._prune(item.frame_idx)
            yield self.result(item.frame_idx)

    def _prune(self, current: int) -> None:
        """Drop non-conditioning outputs no future step can attend to: flat memory in shot length."""
        for store in self.session.output_dict_per_obj.values():
            anchors = [current] + list(store["cond_frame_outputs"])
            non_cond = store["non_cond_frame_outputs"]
            for frame in [f for f in non_cond if min(abs(f - a) for a in anchors) > self.reach]:
                del non_cond[frame]

    def state_frames(self) -> int:
        """Per-frame outputs held, plus the runs recording which frames were tracked."""
        outputs = sum(
            len(s["cond_frame_outputs"]) + len(s["non_cond_frame_outputs"])
            for s in self.session.output_dict_per_obj.values()
        )
        return outputs + sum(len(t.spans) for t in self.session.frames_tracked_per_obj.values())

    def close(self) -> None:
        self.session.reset_inference_session()
        self.session.cache.clear_all()
        self.session.processed_frames = LazyFrames((), 0)


def promote(session, obj_idx: int, index: int) -> None:
    """A corrected frame's output becomes a conditioning frame: attended by every later frame, reused (not
    recomputed) by every later pass. Its memory was encoded from the corrected mask already."""
    store = session.output_dict_per_obj[obj_idx]
    out = store["non_cond_frame_outputs"].pop(index, None)
    if out is not None:
        store["cond_frame_outputs"][index] = out
