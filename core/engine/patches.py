"""Every change mattebridge makes to sam2's own behaviour, in one place: installed explicitly when a model is
built (`install`, idempotent) and refused on a sam2 other than the one these were written and tested against,
since they reach into its internals."""

from __future__ import annotations

import threading

from mattebridge.core.errors import MatteBridgeError

SAM2_VERSION = "1.1.0"  # the sam2 (PyPI, Meta's code) these patches were written for
_lock = threading.Lock()
_installed = False
_ious = threading.local()


def install() -> None:
    """Keep each frame's predicted IoU, and silence sam2's per-propagation tqdm bar (callers report progress).
    Class-level, once per process; a second call does nothing."""
    global _installed
    with _lock:
        if _installed:
            return
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("sam2")
        except PackageNotFoundError:
            found = "not installed"
        if found != SAM2_VERSION:
            raise MatteBridgeError(
                f"sam2 {found}: mattebridge's engine is written for sam2 {SAM2_VERSION} (it reaches "
                f"into sam2's internals); install sam2=={SAM2_VERSION}"
            )
        from sam2 import sam2_video_predictor
        from sam2.modeling.sam2_base import SAM2Base

        sam2_video_predictor.tqdm = lambda iterable, **kwargs: iterable
        # sam2 computes each mask's predicted IoU and drops it; keep it with the frame's output ("iou") so the QC
        # table and the EXR header can carry it. The inner wrapper sees the SAM heads' outputs, the outer one owns
        # the per-frame output dict the predictor stores.
        track_step = SAM2Base._track_step
        run_single_frame = sam2_video_predictor.SAM2VideoPredictor._run_single_frame_inference

        def track_step_keeping_iou(self, *args, **kwargs):
            out = track_step(self, *args, **kwargs)
            _ious.value = out[1][2]  # sam_outputs: (..., ious, ...); (B, M) with M = 1 or 3 candidate masks
            return out

        def run_single_frame_keeping_iou(self, *args, **kwargs):
            _ious.value = None
            compact, masks = run_single_frame(self, *args, **kwargs)
            ious = _ious.value
            compact["iou"] = None if ious is None else float(ious.float().max())  # the chosen mask is the best
            return compact, masks

        SAM2Base._track_step = track_step_keeping_iou
        sam2_video_predictor.SAM2VideoPredictor._run_single_frame_inference = run_single_frame_keeping_iou
        _installed = True


def attend_in_model_dtype(predictor) -> None:
    """sam2 stores memories in bf16; without CUDA autocast, memory attention must get them in the dtype of the
    current frame's features (a frame whose memory holds no object pointer fails otherwise). Per model."""
    attention = predictor.memory_attention
    forward = attention.forward

    def cast_forward(curr, memory, curr_pos=None, memory_pos=None, num_obj_ptr_tokens=0):
        dtype = (curr[0] if isinstance(curr, list) else curr).dtype
        memory_pos = None if memory_pos is None else memory_pos.to(dtype)
        return forward(curr, memory.to(dtype), curr_pos, memory_pos, num_obj_ptr_tokens)

    attention.forward = cast_forward
