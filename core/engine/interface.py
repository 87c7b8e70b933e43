"""What the pipeline and the server call on an engine, whichever tracker runs (docs/trackers.md).

An `Engine` is a loaded model; `engine.tracker(images, n)` opens one clip on it. Every tracker keeps the
same contract as the SAM 2.1 streaming engine (core/engine/tracker.py): frames come from a lazy feed of
normalised (3, S, S) tensors, prompts are in normalised display coordinates, logits come out at `mask_size`,
state is pruned to what the model can still attend to (`reach`), and a prompt on a frame a pass has
already tracked is a correction that stays in force from there on.
"""

from __future__ import annotations

from typing import Dict, Iterator, List, Optional, Protocol, Sequence, runtime_checkable

from mattebridge.core.engine.tracker import ObjectPrompt, TrackerOutput

__all__ = ["Engine", "ObjectPrompt", "Tracker", "TrackerOutput"]


@runtime_checkable
class Tracker(Protocol):
    """One clip on one model."""

    reach: int  # how many frames back (in processing order) a frame can attend to
    mask_size: int  # logits are (mask_size, mask_size) over the display window (S / 4 for SAM 2.1)

    def add_prompt(self, index: int, obj: str, prompt: ObjectPrompt) -> TrackerOutput:
        """Prompt `obj` on frame `index`; on a frame already tracked it is a correction that stays in force."""

    def propagate(
        self, start: int, stop: int, reverse: bool = False, corrections: Optional[Dict[int, List[tuple]]] = None
    ) -> Iterator[TrackerOutput]:
        """Frames `start`..`stop` inclusive in one direction; `corrections` {index: [(obj, prompt)]} are applied
        when the pass reaches their frame (tracked first, then corrected; the corrected result is emitted)."""

    def result(self, index: int) -> TrackerOutput:
        """The latest output of every object on a frame (logits, object score, predicted IoU)."""

    def image_features(self, index: int):
        """The image encoder's output for frame `index` if this tracker computed it, else None."""

    def reuse_image_features(self, index: int, features) -> None:
        """Start from features an earlier tracker on the same model computed for the same pixels."""

    def state_frames(self) -> int:
        """How many per-frame outputs are held (tests and benchmarks check it stays flat)."""

    def close(self) -> None:
        """Free the clip's state now (the feed belongs to the caller)."""


@runtime_checkable
class Engine(Protocol):
    """A loaded model: what it is, where it runs, the square input size its feed must produce."""

    name: str
    family: str
    sha256: str  # identity of the weights, written into every matte header (the resume key)
    device: object
    image_size: int  # the feed's square input size
    mask_size: int  # the logits' size (the post step's grid)

    def tracker(self, images: Sequence, num_frames: int) -> Tracker:
        """A new clip on this model, reading frame i as `images[i]` (a normalised (3, S, S) tensor)."""
