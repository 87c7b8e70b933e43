"""SAM 2.1 driven frame by frame with bounded state (docs/architecture.md §2, §5).

`sam2`'s SAM2VideoPredictor keeps every frame's image and memory. Here its own methods run on an
inference state whose `images` is a lazy feed and whose per-frame outputs are pruned to what the model
can still attend to: conditioning (prompted) frames, and the non-conditioning frames within reach of
the current frame or of a conditioning frame (memory frames and object pointers). The calls are
sam2's, so results are those of `propagate_in_video` on the same call sequence.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch

from mattebridge.core.engine import patches


@dataclass
class ObjectPrompt:
    """What an object gets on one frame, in normalised display coordinates (0..1)."""

    points: Optional[np.ndarray] = None  # (N, 2)
    labels: Optional[np.ndarray] = None  # (N,) 1 = foreground, 0 = background
    box: Optional[np.ndarray] = None  # (4,)
    mask: Optional[np.ndarray] = None  # (H, W) bool over the display window


@dataclass
class TrackerOutput:
    index: int  # frame index within the clip (0-based)
    logits: Dict[str, np.ndarray]  # object -> (L, L) mask logits over the display window
    scores: Dict[str, float]  # object -> object-presence logit
    ious: Dict[str, float] = None  # object -> the model's predicted IoU of its mask (absent for mask prompts)


@contextlib.contextmanager
def compute_context(device):
    """How every tracker runs the model: no autograd; bf16 autocast on CUDA (sam2 stores memory in bf16)."""
    with torch.inference_mode():
        if device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                yield
        else:
            yield


def keep_output(obj: str, out: dict, logits: dict, scores: dict, ious: dict) -> None:
    """One object's stored frame output (sam2's and transformers' share its keys) into the result's dicts."""
    logits[obj] = out["pred_masks"][0, 0].float().cpu().numpy()
    scores[obj] = float(out["object_score_logits"].float().flatten()[0])
    if out.get("iou") is not None:
        ious[obj] = out["iou"]


class StreamingTracker:
    def __init__(self, predictor, images: Sequence, num_frames: int, device=None):
        patches.install()  # a no-op after load_model; here too for predictors built elsewhere
        self.predictor = predictor
        self.device = torch.device(device) if device is not None else predictor.device
        size = predictor.image_size // 4  # outputs stay at the model's mask resolution
        self.state = {
            "images": images,
            "num_frames": num_frames,
            "offload_video_to_cpu": False,
            "offload_state_to_cpu": False,
            "video_height": size,
            "video_width": size,
            "device": self.device,
            "storage_device": self.device,
            "point_inputs_per_obj": {},
            "mask_inputs_per_obj": {},
            "cached_features": {},
            "constants": {},
            "obj_id_to_idx": OrderedDict(),
            "obj_idx_to_id": OrderedDict(),
            "obj_ids": [],
            "output_dict_per_obj": {},
            "temp_output_dict_per_obj": {},
            "frames_tracked_per_obj": {},
        }
        p = predictor
        # how far back (in processing order) a frame can reach: memory frames and object pointers
        self.reach = max((p.num_maskmem - 1) * p.memory_temporal_stride_for_eval + 1, p.max_obj_ptrs_in_encoder - 1)
        self.mask_size = size  # the logits' grid (interface.Tracker)

    def close(self) -> None:
        """Let go of the per-frame outputs and features now (a run or preview is over)."""
        self.state["output_dict_per_obj"].clear()
        self.state["cached_features"].clear()

    # --- image features (a frame's encoder output, reusable across clicks on it) --------------------
    def image_features(self, index: int):
        """The image encoder's output for frame `index` if this tracker computed it (else None)."""
        return self.state["cached_features"].get(index)

    def reuse_image_features(self, index: int, features) -> None:
        """Start from features an earlier tracker computed for frame `index` (same model, same pixels)."""
        self.state["cached_features"] = {index: features}

    def _compute(self):
        return compute_context(self.device)

    # --- prompts ------------------------------------------------------------------------------
    def add_prompt(self, index: int, obj: str, prompt: ObjectPrompt) -> TrackerOutput:
        """Prompt `obj` on frame `index`; a frame already tracked takes it as a correction."""
        with self._compute():
            if prompt.mask is not None:
                self.predictor.add_new_mask(self.state, index, obj, torch.as_tensor(prompt.mask, dtype=torch.bool))
            else:
                self.predictor.add_new_points_or_box(
                    self.state,
                    index,
                    obj,
                    points=None if prompt.points is None else torch.as_tensor(prompt.points, dtype=torch.float32),
                    labels=None if prompt.labels is None else torch.as_tensor(prompt.labels, dtype=torch.int32),
                    box=None if prompt.box is None else torch.as_tensor(prompt.box, dtype=torch.float32),
                    normalize_coords=False,
                )
        return self.result(index)

    def result(self, index: int) -> TrackerOutput:
        """The latest output of every object on a frame (temporary prompt outputs first)."""
        logits, scores, ious = {}, {}, {}
        for obj, idx in self.state["obj_id_to_idx"].items():
            out = None
            for store in (self.state["temp_output_dict_per_obj"][idx], self.state["output_dict_per_obj"][idx]):
                out = out or store["cond_frame_outputs"].get(index) or store["non_cond_frame_outputs"].get(index)
            if out is not None:
                keep_output(obj, out, logits, scores, ious)
        return TrackerOutput(index, logits, scores, ious)

    # --- propagation --------------------------------------------------------------------------
    def propagate(
        self, start: int, stop: int, reverse: bool = False, corrections: Optional[Dict[int, List[tuple]]] = None
    ) -> Iterator[TrackerOutput]:
        """Track from `start` to `stop` (inclusive) in one direction, yielding every frame.

        `corrections` maps a frame index to [(object, ObjectPrompt), ...]: when the pass reaches that frame
        it is tracked, corrected with the prompts, and the pass goes on from it with the correction in force.
        """
        return corrected_passes(self, start, stop, reverse, corrections, rerun_corrected=True)

    def _pass(self, start: int, stop: int, reverse: bool) -> Iterator[TrackerOutput]:
        if reverse and start == 0:  # sam2 skips a reverse pass that starts on frame 0
            with self._compute():
                self.predictor.propagate_in_video_preflight(self.state)
            yield self.result(0)
            return
        with self._compute():
            frames = self.predictor.propagate_in_video(
                self.state, start_frame_idx=start, max_frame_num_to_track=abs(stop - start), reverse=reverse
            )
        while True:
            with self._compute():
                item = next(frames, None)
            if item is None:
                return
            index = item[0]
            self._prune(index)
            yield self.result(index)

    def _prune(self, current: int) -> None:
        """Drop non-conditioning outputs no future step can attend to: flat memory in shot length."""
        for idx, store in self.state["output_dict_per_obj"].items():
            anchors = [current] + list(store["cond_frame_outputs"])
            non_cond = store["non_cond_frame_outputs"]
            for frame in [f for f in non_cond if min(abs(f - a) for a in anchors) > self.reach]:
                del non_cond[frame]

    def state_frames(self) -> int:
        """How many per-frame outputs are held (for tests and benchmarks)."""
        return sum(
            len(s["cond_frame_outputs"]) + len(s["non_cond_frame_outputs"])
            for s in self.state["output_dict_per_obj"].values()
        )


def corrected_passes(tracker, start: int, stop: int, reverse: bool, corrections, rerun_corrected: bool):
    """`Tracker.propagate` for both trackers: passes of `tracker._pass(a, b, reverse)` from `start` to `stop`,
    halting on each corrected frame, which is tracked, then prompted with its corrections. `rerun_corrected`: the
    next pass starts on the corrected frame and emits it (sam2 re-runs a conditioning frame); else its result is
    emitted here and the next pass starts after it (transformers' sessions)."""
    corrections = corrections or {}
    step = -1 if reverse else 1
    pending = sorted((f for f in corrections if (f - start) * step > 0 and (stop - f) * step >= 0), reverse=reverse)
    segment_start = start
    for halt in pending + [None]:
        end = stop if halt is None else halt
        for result in tracker._pass(segment_start, end, reverse):
            if result.index == halt:
                break  # tracked: the correction below runs on its memory
            yield result
        if halt is None:
            return
        for obj, prompt in corrections[halt]:
            tracker.add_prompt(halt, obj, prompt)
        if rerun_corrected:
            segment_start = halt
            continue
        yield tracker.result(halt)
        if halt == stop:
            return
        segment_start = halt + step
