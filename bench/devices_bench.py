"""Benchmark `mattebridge serve --devices`: two clients' propagations at once on two model workers against the same
two on one (issue #14).

    python bench/devices_bench.py --devices cpu,cpu --rounds 3          # random-weight tiny at 256 px, CPU
    python bench/devices_bench.py --devices cuda:0,cuda:1 --image-size 1024 --width 1920 --height 1080

Each round starts a one-device server (the first device of --devices) and a --devices server, and on each runs
one propagation alone, then two clients' propagations at once (different objects, own outputs, raw edge so the
model sets the pace). Wall time per run; the ratio is two-at-once frames/s on --devices over the same on one
device. On a CPU the workers share the cores (each gets cores / workers threads), so expect ~1x there; the
figure that matters is on a box with one GPU per worker. Prints markdown rows for bench/RESULTS.md.
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

sys.path.insert(0, os.path.dirname(__file__))
from track_bench import make_plate  # noqa: E402  the same real footage as the other benchmarks

from mattebridge.core.wire.client import Client  # noqa: E402


def serve(checkpoint: str, devices: str, image_size: int, folder: str):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    cmd = [sys.executable, "-m", "mattebridge.cli", "serve", "--bind", address, "--allow-root", folder]
    cmd += ["--log-level", "warning", "--checkpoint", checkpoint, "--model-config", "sam2.1_hiera_t"]
    cmd += ["--image-size", str(image_size), "--devices", devices]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    while b"ready on" not in proc.stdout.readline():
        if proc.poll() is not None:
            raise SystemExit(f"server on {devices} did not start")
    return proc, address


def propagate(address: str, plate: str, frames: str, out: str, point, ready=None) -> None:
    with Client(address, timeout=600) as client:
        clip = client.open_clip(plate, frames, colorspace="ACEScg")
        clip.prompt(int(frames.split("-")[0]), "obj", points=[(*point, True)], edge="raw")
        if ready is not None:
            ready.wait()  # both clips open, so each sits on its own worker, before either runs
        for _ in clip.propagate(direction="forward", out=out, edge="raw", force=True):
            pass


def timed(address: str, plate: str, frames: str, folder: str, clients: int, size) -> float:
    points = [(0.3 * size[0], 0.5 * size[1]), (0.7 * size[0], 0.5 * size[1])]  # two objects, pixels
    ready = threading.Barrier(clients) if clients > 1 else None
    threads = [
        threading.Thread(
            target=propagate,
            args=(address, plate, frames, os.path.join(folder, f"c{i}", "m.####.exr"), points[i], ready),
        )
        for i in range(clients)
    ]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.monotonic() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", default="cpu,cpu")
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--width", type=int, default=960)
    p.add_argument("--height", type=int, default=540)
    args = p.parse_args()
    from mattebridge.core.engine.models import save_random_checkpoint

    one = args.devices.split(",")[0]
    with tempfile.TemporaryDirectory() as tmp:
        plate = make_plate(tmp, args.frames, args.width, args.height)
        checkpoint = save_random_checkpoint(os.path.join(tmp, "tiny.pt"), "sam2.1_hiera_t", seed=0)
        frames = f"1001-{1000 + args.frames}"
        runs = {(d, n): [] for d in (one, args.devices) for n in (1, 2)}
        for r in range(args.rounds):
            for devices in (one, args.devices):
                proc, address = serve(checkpoint, devices, args.image_size, tmp)
                try:
                    warm = os.path.join(tmp, "warm", "m.####.exr")
                    propagate(address, plate, "1001-1002", warm, (args.width / 2, args.height / 2))
                    for n in (1, 2):
                        folder = os.path.join(tmp, f"r{r}")
                        runs[(devices, n)].append(timed(address, plate, frames, folder, n, (args.width, args.height)))
                finally:
                    proc.terminate()
                    proc.wait(60)
                print(f"round {r + 1}: {devices}: " + ", ".join(f"{n}: {runs[(devices, n)][-1]:.1f}s" for n in (1, 2)))
    load = os.getloadavg()
    when = time.strftime("%Y-%m-%d %H:%M")
    print(f"\n{platform.node()} {os.cpu_count()} cores, load {load[0]:.1f}/{load[1]:.1f}, {when}")
    size = f"{args.width}x{args.height}"
    print(f"{args.frames} frames {size}, random tiny @{args.image_size}, raw edge, {args.rounds} rounds\n")
    print("| server | one propagation: wall s (min / median) | two at once: wall s | two at once: frames/s |")
    print("|---|---:|---:|---:|")
    fps = {}
    for devices in (one, args.devices):
        one_run, two = runs[(devices, 1)], runs[(devices, 2)]
        fps[devices] = [2 * args.frames / t for t in two]
        print(
            f"| --devices {devices} | {min(one_run):.1f} / {statistics.median(one_run):.1f} "
            f"| {min(two):.1f} / {statistics.median(two):.1f} "
            f"| {max(fps[devices]):.2f} / {statistics.median(fps[devices]):.2f} |"
        )
    best = max(fps[args.devices]) / max(fps[one])
    median = statistics.median(fps[args.devices]) / statistics.median(fps[one])
    print(f"\n**two at once, --devices {args.devices} / {one}: {best:.2f}x (best) / {median:.2f}x (median)**")
    return 0


if __name__ == "__main__":
    sys.exit(main())
