"""Benchmark `track`: per-frame time split (read, colour, engine, write) and peak RSS vs shot length.

    python bench/track_bench.py --frames 50 400 --image-size 256 --device cpu            # random weights
    python bench/track_bench.py --frames 50 400 --model sam2.1_hiera_tiny --device cuda  # real weights

Plates are the real bedroom footage (tests/data/bedroom) as ACEScg EXRs, looped to the shot length,
optionally resized (--width/--height, e.g. 1920x1080). Each length runs in its own process so peak RSS
is that run's alone. Prints a markdown row per run for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

FOOTAGE = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "bedroom")


def make_plate(folder: str, count: int, width: int, height: int) -> str:
    import OpenImageIO as oiio

    sources = sorted(f for f in os.listdir(FOOTAGE) if f.endswith(".jpg"))
    real = []
    for name in sources:
        buf = oiio.ImageBuf(os.path.join(FOOTAGE, name))
        if (width, height) != (buf.spec().width, buf.spec().height):
            buf = oiio.ImageBufAlgo.resize(buf, roi=oiio.ROI(0, width, 0, height, 0, 1, 0, 3))
        buf = oiio.ImageBufAlgo.colorconvert(buf, "sRGB - Texture", "ACEScg", colorconfig="ocio://studio-config-latest")
        buf.set_write_format(oiio.HALF)
        path = os.path.join(folder, "src." + name.split(".")[1] + ".exr")
        buf.write(path)
        real.append(path)
    for i in range(count):  # ping-pong through the real frames so motion stays continuous
        k = i % (2 * len(real) - 2)
        os.symlink(real[k if k < len(real) else 2 * len(real) - 2 - k], os.path.join(folder, f"plate.{1001 + i}.exr"))
    return os.path.join(folder, "plate.####.exr")


def one_run(args) -> dict:
    from mattebridge.core.engine.models import save_random_checkpoint
    from mattebridge.core.track.job import TrackJob
    from mattebridge.core.track.run import run_track
    from mattebridge.core.wire.prompts import Prompts
    from mattebridge.core.wire.sequence import FrameRange

    with tempfile.TemporaryDirectory() as tmp:
        plate = make_plate(tmp, args.count, args.width, args.height)
        checkpoint, config = None, None
        if not args.model:
            checkpoint, config = save_random_checkpoint(os.path.join(tmp, "random.pt")), "sam2.1_hiera_t"
        prompts = Prompts()
        prompts.add_point("child", 1001, 0.31 * args.width, 0.55 * args.height)
        job = TrackJob(
            plate=plate,
            frames=FrameRange(1001, 1000 + args.count),
            prompts=prompts,
            out=os.path.join(tmp, "out", "m.####.exr"),
            colorspace="ACEScg",
            direction="forward",
            model=args.model or "sam2.1_hiera_tiny",
            checkpoint=checkpoint,
            model_config=config,
            image_size=args.image_size,
            device=args.device,
        )
        start = time.perf_counter()
        stats = run_track(job)
        wall = time.perf_counter() - start
    per_frame = {k: 1000 * v / args.count for k, v in stats.seconds.items()}
    return {
        "frames": args.count,
        "wall_s": wall,
        "ms_per_frame": per_frame,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--frames", type=int, nargs="+", default=[50, 400])
    p.add_argument("--count", type=int, help=argparse.SUPPRESS)  # one run, in a child process
    p.add_argument("--width", type=int, default=960)
    p.add_argument("--height", type=int, default=540)
    p.add_argument("--model", help="published model name (default: random-weight tiny)")
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    if args.count:
        print(json.dumps(one_run(args)))
        return
    print(
        f"machine: {platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"python {platform.python_version()}"
    )
    print(
        "| frames | plate | model | size | device | read ms/f | colour ms/f | engine ms/f | write ms/f | wall s "
        "| peak RSS MiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for count in args.frames:
        cmd = (
            [
                sys.executable,
                __file__,
                "--count",
                str(count),
                "--width",
                str(args.width),
                "--height",
                str(args.height),
                "--device",
                args.device,
            ]
            + (["--model", args.model] if args.model else [])
            + (["--image-size", str(args.image_size)] if args.image_size else [])
        )
        r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
        ms = r["ms_per_frame"]
        print(
            f"| {count} | {args.width}x{args.height} | {args.model or 'random tiny'} | {args.image_size or 1024} | "
            f"{args.device} | {ms['read']:.1f} | {ms['colour']:.1f} | {ms['engine']:.1f} | {ms['write']:.1f} | "
            f"{r['wall_s']:.1f} | {r['peak_rss_mib']:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
