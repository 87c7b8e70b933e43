"""`mattebridge demo`: a synthetic scene-linear plate with a known subject, tracked end to end."""

from __future__ import annotations

import os
import sys

import numpy as np

from mattebridge.core.image.matte_io import write_matte
from mattebridge.core.image.plate import Geometry
from mattebridge.core.wire.prompts import Prompts
from mattebridge.core.wire.sequence import FrameRange

FRAMES = FrameRange(1001, 1024)
WIDTH, HEIGHT = 640, 360


def subject_mask(frame: int) -> np.ndarray:
    """A disc that moves left to right: the ground truth the demo's matte is scored against."""
    t = (frame - FRAMES.first) / (len(FRAMES) - 1)
    cx, cy, r = 180 + 280 * t, 180 + 40 * np.sin(6.28 * t), 70
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH] + 0.5
    return ((xx - cx) ** 2 + (yy - cy) ** 2 <= r * r), (cx, cy)


def write_plate(folder: str) -> str:
    """ACEScg half-float EXRs: a textured grey background and a warm lit disc."""
    rng = np.random.default_rng(7)
    background = 0.18 * (0.6 + 0.8 * rng.random((HEIGHT // 8, WIDTH // 8, 3)))
    background = np.kron(background, np.ones((8, 8, 1)))
    pattern = os.path.join(folder, "plate.####.exr")
    geometry = Geometry((0, 0, WIDTH, HEIGHT), (0, 0, WIDTH, HEIGHT))
    for frame in FRAMES:
        mask, _ = subject_mask(frame)
        rgb = np.where(mask[..., None], np.array([1.6, 0.7, 0.3]), background).astype(np.float32)
        write_matte(pattern.replace("####", str(frame)), {c: rgb[..., i] for i, c in enumerate("RGB")}, geometry, {})
    return pattern


def run_demo(args) -> int:
    import OpenImageIO as oiio

    from mattebridge.core.engine.models import download, save_random_checkpoint
    from mattebridge.core.track.job import TrackJob
    from mattebridge.core.track.outputs import out_path
    from mattebridge.core.track.progress import ProgressBar
    from mattebridge.core.track.run import run_track

    os.makedirs(args.dir, exist_ok=True)
    plate = write_plate(args.dir)
    checkpoint, config = args.checkpoint, args.model_config
    if args.random_weights:
        checkpoint, config = os.path.join(args.dir, "random_weights.pt"), "sam2.1_hiera_t"
        save_random_checkpoint(checkpoint, config)
    elif not checkpoint:
        download(args.model)
    prompts = Prompts()
    _, (cx, cy) = subject_mask(FRAMES.first)
    prompts.add_point("subject", FRAMES.first, cx, cy)
    out = os.path.join(args.dir, "mattes", "subject.####.exr")
    job = TrackJob(
        plate=plate,
        frames=FRAMES,
        prompts=prompts,
        out=out,
        colorspace="ACEScg",
        model=args.model,
        checkpoint=checkpoint,
        model_config=config,
        image_size=args.image_size,
        device=args.device,
    )
    print(f"demo plate: {plate} ({len(FRAMES)} frames, {WIDTH}x{HEIGHT}, ACEScg)", file=sys.stderr)
    run_track(job, progress=ProgressBar("track"), log=lambda s: print(s, file=sys.stderr))
    ious = []
    for frame in FRAMES:
        alpha = oiio.ImageBuf(out_path(out, frame, "subject")).get_pixels(oiio.FLOAT)[..., 0] > 0.5
        truth, _ = subject_mask(frame)
        ious.append((alpha & truth).sum() / max((alpha | truth).sum(), 1))
    print(f"mattes: {out}")
    print(
        f"mean IoU against the known subject: {np.mean(ious):.3f}"
        + (" (random weights: expect noise)" if args.random_weights else "")
    )
    return 0
