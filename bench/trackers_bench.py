"""Every tracker behind the engine interface, on this machine: ms/frame, peak RSS at a short and a long shot,
and the ratio to the SAM 2.1 engine in the same run (issue #15).

Random weights (nothing can be downloaded here): the SAM 2.1 engine is the real Hiera-tiny architecture; the
transformers trackers are the small random-initialised configs of tests/test_trackers.py, so their ms/frame say
what the wrappers cost around a model of that size, not how the published models compare. Each (tracker, shot
length) runs in its own process, so peak RSS is that run's alone.

    python bench/trackers_bench.py [--frames 30 300] [--image-size 128] [--device cpu|cuda]

On a GPU with the published weights: python bench/trackers_bench.py --device cuda --weights
(loads each downloaded catalogue model by name instead of the random configs; run `mattebridge models download`
first on a machine with internet).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_one(family: str, frames: int, image_size: int, device: str, weights: bool) -> dict:
    """In this process: prompt frame 0, propagate through `frames`; ms/frame, held state, peak RSS."""
    import torch

    sys.path.insert(0, os.path.join(REPO, "tests"))
    import test_trackers as t  # the tiny configs the tests use

    from mattebridge.core.engine import transformers_tracker as tt
    from mattebridge.core.engine.models import build_model, load_model
    from mattebridge.core.engine.tracker import StreamingTracker

    torch.manual_seed(0)
    if family == "sam2.1":
        if weights:
            model = load_model("sam2.1_hiera_tiny", device=device)
            tracker, size = model.tracker, model.image_size
        else:
            predictor = build_model("sam2.1_hiera_t", image_size=image_size).to(device)
            size = image_size

            def tracker(feed, n):
                return StreamingTracker(predictor, feed, n, device)
    else:
        if weights:
            from mattebridge.core.engine import catalog

            name = {"sam3_tracker_video": "sam3-tracker", "edgetam_video": "edgetam", "sam2_video": "sam2.1-hf-tiny"}
            engine = catalog.load_engine(name[family], device=device)
        else:
            cls, _ = tt.family_classes(family)
            folder = tempfile.mkdtemp()
            t.tiny_model(cls, family).save_pretrained(folder)
            from mattebridge.core.engine import catalog

            engine = catalog.load_engine("", checkpoint=folder, device=device)
        tracker, size = engine.tracker, engine.image_size
    feed = t.Feed(size, frames)
    run = tracker(feed, frames)
    run.add_prompt(0, "a", t._prompts()[0])
    start, held = time.perf_counter(), 0
    for _ in run.propagate(0, frames - 1):
        held = max(held, run.state_frames())
    ms = (time.perf_counter() - start) / frames * 1000
    return {
        "family": family,
        "frames": frames,
        "input": size,
        "ms_per_frame": round(ms, 1),
        "max_held": held,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, nargs="+", default=[30, 300])
    p.add_argument("--image-size", type=int, default=128, help="the SAM 2.1 engine's input (random weights)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--weights", action="store_true", help="the downloaded published models instead")
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: family,frames in a child process
    args = p.parse_args()
    if args.one:
        family, frames = args.one.split(",")
        print(json.dumps(run_one(family, int(frames), args.image_size, args.device, args.weights)))
        return
    from mattebridge.core.engine import transformers_tracker as tt

    rows = []
    for family in ["sam2.1", *tt.FAMILIES]:
        for frames in args.frames:
            cmd = [
                sys.executable,
                __file__,
                "--one",
                f"{family},{frames}",
                "--image-size",
                str(args.image_size),
                "--device",
                args.device,
            ] + (["--weights"] if args.weights else [])
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
    base = {r["frames"]: r["ms_per_frame"] for r in rows if r["family"] == "sam2.1"}
    print(
        "| tracker | input | frames | ms/frame | ratio to SAM 2.1 engine | max held per-frame outputs | peak RSS MiB |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = r["ms_per_frame"] / base[r["frames"]]
        print(
            f"| {r['family']} | {r['input']} | {r['frames']} | {r['ms_per_frame']} | {ratio:.2f} | {r['max_held']} "
            f"| {r['peak_rss_mib']} |"
        )


if __name__ == "__main__":
    main()
