"""The model's view of a plate sequence: read, downsample in linear light, display/view, normalise.

Lazy and bounded: frames are prepared on demand and a few ahead (in the direction the engine is
moving) on worker threads, never the whole shot. Reading stays on those threads (OpenImageIO releases
the GIL); everything after it runs with torch in float32 on the model's device: the plate goes up once
(from pinned memory, without blocking, on CUDA), is area-downsampled there (core/image/resample.py) and
put through the display/view baked into LUTs (core/image/lut.py).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, List, Optional

import numpy as np

from mattebridge.core.image.colour import DisplayTransform
from mattebridge.core.image.plate import Plate, to_display
from mattebridge.core.image.resample import area_resize_tensor

# ImageNet statistics the SAM 2 image encoder was trained with
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def display_view(plate: Plate, size: int, transform: DisplayTransform, device=None):
    """(size, size, 3) float32 tensor of display-referred RGB in 0..1 on `device` (default: the CPU)."""
    import torch

    device = torch.device(device or "cpu")
    pixels = torch.from_numpy(np.ascontiguousarray(to_display(plate.pixels, plate.geometry), np.float32))
    if device.type == "cuda":
        pixels = pixels.pin_memory()
    linear = area_resize_tensor(pixels.to(device, non_blocking=True), size, size)
    return transform.apply_tensor(linear).clamp_(0.0, 1.0)


def model_view(plate: Plate, size: int, transform: DisplayTransform, device=None) -> np.ndarray:
    """(size, size, 3) display-referred RGB in 0..1: what the model sees of this plate, as numpy."""
    return display_view(plate, size, transform, device).cpu().numpy()


def model_input(plate: Plate, size: int, transform: DisplayTransform, device=None):
    """The model's input tensor (3, size, size), normalised, on `device`."""
    import torch

    rgb = display_view(plate, size, transform, device)
    mean = torch.from_numpy(MEAN).to(rgb.device, non_blocking=True)[:, None, None]
    std = torch.from_numpy(STD).to(rgb.device, non_blocking=True)[:, None, None]
    out = torch.empty((3,) + rgb.shape[:2], dtype=rgb.dtype, device=rgb.device)
    return torch.sub(rgb.permute(2, 0, 1), mean, out=out).div_(std)  # one pass to planar, then in place


class ModelFeed:
    """Sequence of model input tensors (3, S, S) for clip indices 0..N-1: index i is `frames[i]`, a frame
    number that `read` turns into its plate, prepared on `device` (default: the CPU)."""

    def __init__(
        self,
        frames: List[int],
        read: Callable[[int], Plate],
        size: int,
        transform: DisplayTransform,
        ahead: int = 4,
        workers: int = 2,
        device: Optional[object] = None,
    ):
        self.frames, self.read, self.size, self.transform = frames, read, size, transform
        self.device = device
        self.ahead = ahead
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mattebridge-feed")
        self._jobs: "OrderedDict[int, object]" = OrderedDict()
        self._lock = threading.Lock()
        self._last = None
        self.seconds = {"read": 0.0, "colour": 0.0}

    def __len__(self) -> int:
        return len(self.frames)

    def _prepare(self, index: int):
        t0 = time.perf_counter()
        plate = self.read(self.frames[index])
        t1 = time.perf_counter()
        tensor = model_input(plate, self.size, self.transform, self.device)  # queued only, on CUDA
        t2 = time.perf_counter()
        with self._lock:
            self.seconds["read"] += t1 - t0
            self.seconds["colour"] += t2 - t1
        return tensor

    def _submit(self, index: int):
        if 0 <= index < len(self.frames) and index not in self._jobs:
            self._jobs[index] = self._pool.submit(self._prepare, index)
            while len(self._jobs) > 2 * self.ahead + 2:  # bounded: forget the oldest
                self._jobs.popitem(last=False)

    def __getitem__(self, index: int):
        if not 0 <= index < len(self.frames):
            raise IndexError(index)
        step = 1 if self._last is None or index >= self._last else -1
        self._last = index
        self._submit(index)
        self._jobs.move_to_end(index)
        for k in range(1, self.ahead + 1):
            self._submit(index + step * k)
        return self._jobs[index].result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._jobs.clear()
