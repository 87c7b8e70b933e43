"""`--edge matte` pipeline cost (issue #13): ms/frame, tiles run, peak memory at 1080p and 4K, with the
oracle stand-in (cost of the trimap, tiles, display transform and blend alone) and a random-weight ViT-S
ViTMatte (the model's cost on this device); and chatter on a still edge, matte vs soft.

Run: python bench/matting_bench.py [--vit]
Real quality needs the published weights: `mattebridge models download vitmatte-small-composition-1k`, then
  python bench/matting_bench.py --weights ~/.cache/mattebridge/models/vitmatte-small-composition-1k
(SAD/MSE/Grad of the band pass on bench/matting_quality.py's scenes, Composition-1k style composites).
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import matting_quality as mq  # noqa: E402

from mattebridge.core.image.plate import Geometry  # noqa: E402
from mattebridge.core.matte.alpha import matted_alpha  # noqa: E402
from mattebridge.core.matte.refine import refine_alpha  # noqa: E402
from mattebridge.core.matte.temporal import TemporalSmoother  # noqa: E402

FG, BG = np.array([0.85, 0.55, 0.25], np.float32), np.array([0.1, 0.3, 0.65], np.float32)


def oracle(rgb, tri):
    lin = rgb.clamp(min=0) ** 2.2
    f, b = torch.as_tensor(FG)[:, None, None], torch.as_tensor(BG)[:, None, None]
    return (((lin - b) * (f - b)).sum(1) / ((f - b) ** 2).sum()).clamp(0, 1)


def vit_s():
    from transformers import VitDetConfig, VitMatteConfig, VitMatteForImageMatting

    from mattebridge.core.engine.matting_model import MattingModel

    bb = VitDetConfig(
        num_channels=4, hidden_size=384, num_attention_heads=6, num_hidden_layers=12, out_features=["stage12"]
    )
    model = VitMatteForImageMatting(
        VitMatteConfig(backbone_config=bb, hidden_size=384, fusion_hidden_sizes=[256, 128, 64, 32])
    ).eval()
    return MattingModel("vit-s random", "", model, torch.device("cpu")).predict


def frame(w, h):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    gt = np.clip(0.5 - (np.hypot(xx - w / 2, yy - h / 2) - 0.3 * h), 0, 1)
    gt = mq._motion_blur(gt, 24)
    plate = gt[..., None] * FG + (1 - gt[..., None]) * BG
    grid = 256  # logits of a 1024 model
    logits = 12 * (mq.area_resize(gt, grid, grid) - 0.5)  # frames are squashed to the square model input
    return gt, plate, logits.astype(np.float32), Geometry((0, 0, w, w), (0, 0, w, h), 1.0)


def cost(w, h, predict, label):
    import resource

    gt, plate, logits, geometry = frame(w, h)
    geometry = Geometry((0, 0, w, h), (0, 0, w, h), 1.0)
    t0 = time.perf_counter()
    alpha, stats = matted_alpha(logits, geometry, plate, lambda x: x ** (1 / 2.2), predict)
    ms = (time.perf_counter() - t0) * 1000
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"| {label} | {w}x{h} | {ms:.0f} | {stats.run}/{stats.tiles} | {peak:.0f} | {np.abs(alpha - gt).max():.4f} |")


def chatter(frames=12):
    """Still edge, model noise only: mean |alpha_t - alpha_t-1| on the edge band, soft vs matte (oracle)."""
    rng = np.random.default_rng(0)
    blob = mq._blob(256, 256, 0.3 * mq.SIZE, seed=1)
    gt = mq._strands(blob, 256, 256, 0.3 * mq.SIZE, count=40, seed=2)
    g = Geometry((0, 0, mq.SIZE, mq.SIZE), (0, 0, mq.SIZE, mq.SIZE), 1.0)
    grain = lambda: rng.normal(0, 0.01, (mq.SIZE, mq.SIZE, 3)).astype(np.float32)  # noqa: E731
    plate0 = gt[..., None] * FG + (1 - gt[..., None]) * BG
    out = {}
    for mode in ("soft", "matte"):
        lsm, asm, prev, diffs, last = (
            TemporalSmoother(logits=True, radius=1),
            TemporalSmoother(radius=12),
            None,
            [],
            None,
        )
        for _ in range(frames):
            lg = lsm(mq.model_logits(gt, rng))
            plate = plate0 + grain()
            if mode == "soft":
                a = refine_alpha(mq.sigmoid(mq.upsample(lg)), plate)
            else:
                a, _ = matted_alpha(lg, g, plate, lambda x: np.clip(x, 0, None) ** (1 / 2.2), oracle, prev)
                a = asm(a)
            prev = lg
            if last is not None:
                diffs.append(np.abs(a - last)[(gt > 0.01) & (gt < 0.99)].mean())
            last = a
        out[mode] = float(np.mean(diffs))
    print(f"chatter on a still edge (mean |dA| a frame, edge band): soft {out['soft']:.5f}, matte {out['matte']:.5f}")


def quality(folder):
    """SAD/MSE/Grad of the band pass with real weights on matting_quality's scenes (same simulated logits)."""
    from mattebridge.core.engine.matting_model import load_matting_model

    predict = load_matting_model("", folder).predict
    g = Geometry((0, 0, mq.SIZE, mq.SIZE), (0, 0, mq.SIZE, mq.SIZE), 1.0)
    rng = np.random.default_rng(0)
    for name, (gt, plate) in mq.scenes().items():
        lg = mq.model_logits(gt, rng)
        a, _ = matted_alpha(lg, g, plate, lambda x: np.clip(x, 0, None) ** (1 / 2.2), predict)
        m, s = mq.metrics(a, gt), mq.metrics(refine_alpha(mq.sigmoid(mq.upsample(lg)), plate), gt)
        print(f"{name}: matte SAD {m['SAD']:.2f} MSE {m['MSE']:.5f} Grad {m['Grad']:.2f} | soft SAD {s['SAD']:.2f}")


if __name__ == "__main__":
    if "--weights" in sys.argv:
        quality(sys.argv[sys.argv.index("--weights") + 1])
        sys.exit()
    torch.set_num_threads(2)
    print("| model | frame | ms/frame | tiles run/grid | peak RSS MiB (process) | max err vs gt |")
    print("|---|---|---|---|---|---|")
    for w, h in ((1920, 1080), (4096, 2160)):
        cost(w, h, oracle, "oracle")
    if "--vit" in sys.argv:
        cost(1920, 1080, vit_s(), "ViT-S random")
    chatter()
