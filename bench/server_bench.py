"""Benchmark `mattebridge serve`: transport cost per frame, and click -> matte latency.

    python bench/server_bench.py --image-size 1024 --device cpu              # random-weight tiny
    python bench/server_bench.py --model sam2.1_hiera_small --device cuda    # real weights, on a GPU

1. Transport, at 1920x1080 and 3840x2160 half RGB: `path` is the server's own read of the EXR (what a
   path-based clip costs per frame), `shm` and `inline` are put_frame round trips from a client (copy into
   shared memory or onto the socket, server copy-out, reply), against the engine's time for one frame.
2. Preview latency, click -> matte back at the client, p50/p99 over --clicks clicks on different frames of
   a 1920x1080 clip, with the server idle and with another client's propagation running.
3. A second click on the same 1920x1080 frame (its image features cached): --clicks clicks with the raw and the
   soft edge each (in runs of half that), p50 / min of each and their ratio (issue #16's goal: soft <= 2x raw),
   for a point and for a person-sized mask prompt.
Prints markdown rows for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from track_bench import make_plate  # noqa: E402  the same real footage as the track benchmark


def start_server(args, folder):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    model = (
        ["--checkpoint", args.checkpoint, "--model-config", "sam2.1_hiera_t"]
        if args.checkpoint
        else ["--model", args.model]
    )
    cmd = [
        sys.executable,
        "-m",
        "mattebridge.cli",
        "serve",
        "--bind",
        address,
        "--allow-root",
        folder,
        "--log-level",
        "warning",
        "--device",
        args.device,
        *model,
    ]
    if args.image_size:
        cmd += ["--image-size", str(args.image_size)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    while b"ready on" not in proc.stdout.readline():
        if proc.poll() is not None:
            raise SystemExit("server did not start")
    return proc, address


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def second_click(address, pattern: str, clicks: int) -> None:
    """Clicks on one frame whose features the server holds, with the raw and the soft edge: a point (with
    random weights the model's object is most of the frame, with a ragged outline: the edge band spans the frame)
    and a mask prompt of a person-sized figure (the model passes a mask prompt through as the frame's output, so
    the edge is that of a compact object, as a trained model's would be)."""
    from mattebridge.core.image.matte_io import write_matte
    from mattebridge.core.image.plate import Geometry
    from mattebridge.core.wire.client import Client

    yy, xx = np.mgrid[0:1080, 0:1920] + 0.5
    figure = (np.hypot((xx - 0.31 * 1920) / (0.12 * 1920), (yy - 0.55 * 1080) / (0.35 * 1080)) < 1).astype(np.float32)
    mask = os.path.join(os.path.dirname(pattern), "figure.exr")  # a path: the server reads it, nothing is sent
    write_matte(mask, {"A": figure}, Geometry((0, 0, 1920, 1080), (0, 0, 1920, 1080)), {})
    prompts = {"point": lambda i: {"points": [(600 + i, 600, True)]}, "person-sized mask": lambda i: {"mask": mask}}
    print("\n| second click on a 1920x1080 frame (features cached) | raw p50 / min | soft p50 / min | soft / raw |")
    print("|---|---|---|---|")
    with Client(address, timeout=120) as c:
        clip = c.open_clip(pattern, "1001-1030", colorspace="ACEScg")
        clip.prompt(1005, "hero", points=[(600, 600, True)], edge="raw")  # the frame's features, computed once
        for name, prompt in prompts.items():
            times = {"soft": [], "raw": []}
            for edge in ("raw", "soft", "raw", "soft"):  # in runs, so work a reply leaves behind counts for its edge
                for i in range(clicks // 2):
                    t0 = time.perf_counter()
                    clip.prompt(1005, "hero", edge=edge, **prompt(i))
                    times[edge].append(time.perf_counter() - t0)
            p50 = {k: 1000 * statistics.median(v) for k, v in times.items()}
            best = {k: 1000 * min(v) for k, v in times.items()}
            print(
                f"| {name} | {p50['raw']:.1f} / {best['raw']:.1f} ms | {p50['soft']:.1f} / {best['soft']:.1f} ms "
                f"| **{p50['soft'] / p50['raw']:.2f}** / {best['soft'] / best['raw']:.2f} (goal <= 2) |"
            )
        clip.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="sam2.1_hiera_tiny")
    p.add_argument("--checkpoint", help="default: a random-weight tiny checkpoint (when --model is not downloaded)")
    p.add_argument("--image-size", type=int)
    p.add_argument("--device", default="auto")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--clicks", type=int, default=20)
    p.add_argument("--sections", default="transport,preview,second", help="which of transport, preview, second")
    args = p.parse_args()
    sections = set(args.sections.split(","))

    from mattebridge.core.engine.models import model_path, save_random_checkpoint
    from mattebridge.core.image.plate import read_plate
    from mattebridge.core.wire.client import Client

    folder = tempfile.mkdtemp(prefix="mattebridge-server-bench-")
    if not args.checkpoint and not os.path.exists(model_path(args.model)):
        args.checkpoint = save_random_checkpoint(os.path.join(folder, "random_tiny.pt"), "sam2.1_hiera_t", seed=0)
    proc, address = start_server(args, folder)
    machine = f"{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    print(f"machine: {machine}; device {args.device}; image size {args.image_size or 1024}")
    try:
        with Client(address, timeout=120) as client:
            print(f"server: {client.info['model']} on {client.info['device']}")
            if sections & {"preview", "second"}:
                os.makedirs(os.path.join(folder, "1920x1080"))
                make_plate(os.path.join(folder, "1920x1080"), 30, 1920, 1080)
            if "transport" in sections:
                print("\n| frame | path (server reads EXR) | shared memory | inline | engine (one frame) |")
                print("|---|---|---|---|---|")
            for width, height in ((1920, 1080), (3840, 2160)) if "transport" in sections else ():
                sub = os.path.join(folder, f"{width}x{height}")
                os.makedirs(sub, exist_ok=True)
                pattern = make_plate(sub, 30, width, height)
                first = pattern.replace("####", "1001")
                times = {"path": [], "shm": [], "inline": []}
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    plate = read_plate(first)
                    times["path"].append(time.perf_counter() - t0)
                pixels = plate.pixels.astype(np.float16)
                clip = client.open_inline_clip("1-1", colorspace="ACEScg")
                for transport in ("shm", "inline"):
                    for _ in range(args.repeats):
                        t0 = time.perf_counter()
                        clip.put_frame(1, pixels, transport=transport)
                        times[transport].append(time.perf_counter() - t0)
                clip.close()
                clip = client.open_clip(pattern, "1001-1010", colorspace="ACEScg")
                clip.prompt(1001, "hero", points=[(width * 0.3, height * 0.55, True)], edge="raw")
                run = clip.propagate(direction="forward", buffers=True, edge="raw", stabilize=False)
                for _ in run:
                    pass
                engine = run.summary["seconds"]["engine"] / 10
                clip.close()
                ms = {k: 1000 * statistics.median(v) for k, v in times.items()}
                print(
                    f"| {width}x{height} half RGB ({pixels.nbytes / 2**20:.0f} MiB) | {ms['path']:.1f} ms | "
                    f"{ms['shm']:.1f} ms | {ms['inline']:.1f} ms | {1000 * engine:.0f} ms |"
                )

            pattern = os.path.join(folder, "1920x1080", "plate.####.exr")
            if "second" in sections:
                second_click(address, pattern, args.clicks)
            if "preview" not in sections:
                return 0
            clicks = [1002 + (i % 28) for i in range(args.clicks)]

            def click_latencies():
                with Client(address, timeout=120) as c:
                    clip = c.open_clip(pattern, "1001-1030", colorspace="ACEScg")
                    out = []
                    for i, frame in enumerate(clicks):
                        t0 = time.perf_counter()
                        clip.prompt(frame, "hero", points=[(600 + i, 600, True)])
                        out.append(time.perf_counter() - t0)
                    clip.close()
                    return out

            idle = click_latencies()
            stop = threading.Event()

            def propagate():
                with Client(address, timeout=120) as c:
                    clip = c.open_clip(pattern, "1001-1030", colorspace="ACEScg")
                    while not stop.is_set():
                        run = clip.propagate(
                            direction="forward",
                            buffers=True,
                            force=True,
                            prompts={
                                "version": 1,
                                "objects": [
                                    {"name": "bg", "frames": [{"frame": 1001, "points": [{"x": 300, "y": 500}]}]}
                                ],
                            },
                        )
                        for _ in run:
                            if stop.is_set():
                                run.cancel()
                        for _ in run:
                            pass

            worker = threading.Thread(target=propagate)
            worker.start()
            time.sleep(3)
            busy = click_latencies()
            stop.set()
            worker.join()
            print("\n| preview (click -> matte, 1920x1080, soft edge) | p50 | p99 |")
            print("|---|---|---|")
            for name, values in (("server idle", idle), ("during another client's propagation", busy)):
                print(f"| {name} | {1000 * pct(values, 50):.0f} ms | {1000 * pct(values, 99):.0f} ms |")
    finally:
        proc.terminate()
        proc.wait(60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
