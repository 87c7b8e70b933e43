"""Throughput: the work around the model against the floor (decode + encode) and against the model itself.

    python bench/throughput.py --sizes 1080p,4k --frames 8 --rounds 3                  # CPU, random tiny at 256
    python bench/throughput.py --device cuda --model-config sam2.1_hiera_b+            # a GPU, 1024
    python bench/throughput.py --device cuda --compile --parts model,sam2              # sam2's compiled path
    bash bench/gpu.sh                                                                  # the whole GPU benchmark

Plates: the real bedroom footage (tests/data/bedroom) upscaled to each size as ACEScg half EXRs, one object
clicked on the first frame and tracked forward. Each measure runs --rounds times; a cell is "min / median".
  floor      read_plate + write_matte of one half alpha channel, frame after frame: the CPU's floor
  feed       ModelFeed alone: plate -> model input tensor on the device
  writer     MattePost alone, writing mattes from fixed logits (soft and raw edge) on TrackRun's writer pool
  stand-in   the whole TrackRun on a stand-in engine (StandInEngine, built only here) whose tracker returns fixed
             logits at once, so its CPU time per frame is everything except the model; the ratio to the floor
             is the issue's goal (<= 2)
  model      the bare model (the engine's tracker on model inputs already on the device) and the whole pipeline
             with it (TrackRun, soft edge): end-to-end frames/s against the bare model's
  sam2       sam2's own SAM2VideoPredictor (init_state on a folder of model-size JPEGs, then
             propagate_in_video) on the same frames, in a process of its own, against the end-to-end run
Other modes (used by bench/gpu.sh): clicks (click -> matte latency from a real server, idle and during another
client's propagation), memory (peak memory of a whole run at each --memory-frames, each in its own process),
table (the rows --json collected, as one table). Model weights are seeded random (shapes and cost do not depend
on them). CPU time is the process's (time.process_time), summed over all its threads.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from track_bench import make_plate  # noqa: E402  the same real footage as the other benchmarks

FIRST = 1001
SIZES = {"1080p": (1920, 1080), "4k": (3840, 2160)}
MODEL_LABELS = {
    "sam2.1_hiera_t": "tiny",
    "sam2.1_hiera_s": "small",
    "sam2.1_hiera_b+": "base+",
    "sam2.1_hiera_l": "large",
}
PARTS = ("floor", "feed", "writer", "stand-in", "model", "sam2")
CLICK_AT = (0.31, 0.55)  # the object's click, as a fraction of the display window


# --- results: one table, rows of measures by columns ------------------------------------------------------
class Table:
    """Cells by (row, column) in the order they come; kept as JSON lines in `path` so several runs (models,
    modes, processes) print as one table."""

    def __init__(self, path=None):
        self.path, self.cells = path, {}

    def add(self, row: str, column: str, text: str) -> None:
        self.cells.setdefault(row, {})[column] = text
        if self.path:
            with open(self.path, "a") as f:
                f.write(json.dumps({"row": row, "column": column, "text": text}) + "\n")
        print(f"  {column} | {row}: {text}", file=sys.stderr, flush=True)

    @classmethod
    def load(cls, path: str) -> "Table":
        table = cls()
        with open(path) as f:
            for line in f:
                cell = json.loads(line)
                table.cells.setdefault(cell["row"], {})[cell["column"]] = cell["text"]
        return table

    def markdown(self) -> str:
        columns = list(dict.fromkeys(c for cells in self.cells.values() for c in cells))
        lines = ["| measure | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
        for row, cells in self.cells.items():
            lines.append(f"| {row} | " + " | ".join(cells.get(c, "–") for c in columns) + " |")
        return "\n".join(lines)


def min_median(values):
    return min(values), statistics.median(values)


def ms(values) -> str:
    return "{:.1f} / {:.1f}".format(*(1000 * v for v in min_median(values)))


def fps(per_frame) -> str:
    """Frames/s from seconds per frame: the best round / the median round."""
    best, median = min_median(per_frame)
    return f"{1 / best:.2f} / {1 / median:.2f}"


def ratio(a, b) -> str:
    """a / b of the best rounds / of the medians."""
    (a0, a1), (b0, b1) = min_median(a), min_median(b)
    return f"**{a0 / b0:.2f}** / {a1 / b1:.2f}"


def sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed_rounds(run, rounds: int, frames: int, device):
    """(wall, cpu) seconds per frame of each round of `run()`."""
    wall, cpu = [], []
    for _ in range(rounds):
        sync(device)
        w0, c0 = time.perf_counter(), time.process_time()
        run()
        sync(device)
        wall.append((time.perf_counter() - w0) / frames)
        cpu.append((time.process_time() - c0) / frames)
    return wall, cpu


# --- inputs -------------------------------------------------------------------------------------------------
def parse_size(text: str):
    if text.lower() in SIZES:
        return SIZES[text.lower()]
    w, sep, h = text.lower().partition("x")
    if not (sep and w.isdigit() and h.isdigit()):
        raise SystemExit(f"--sizes: {text!r} is not 1080p, 4k or WIDTHxHEIGHT")
    return int(w), int(h)


def plates(work: str, width: int, height: int, count: int) -> str:
    """The footage as `count` ACEScg half EXR frames at this size, made once per work folder."""
    folder = os.path.join(work, f"plates-{width}x{height}x{count}")
    if not os.path.exists(os.path.join(folder, "complete")):
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        make_plate(folder, count, width, height)
        open(os.path.join(folder, "complete"), "w").close()
    return os.path.join(folder, "plate.####.exr")


def checkpoint(work: str, config: str) -> str:
    from mattebridge.core.engine.models import save_random_checkpoint

    path = os.path.join(work, f"random-{config}.pt")
    return path if os.path.exists(path) else save_random_checkpoint(path, config, seed=0)


def column_of(args, width: int, height: int) -> str:
    model = MODEL_LABELS.get(args.model_config, args.model_config) + (" compiled" if args.compile else "")
    return f"{model} @{args.image_size}, {width}x{height}"


def standin_logits(grid: int) -> np.ndarray:
    """(grid, grid) logits of a person-sized object: an upright ellipse (~13 % of the frame) with a soft rim."""
    y, x = (np.mgrid[:grid, :grid] + 0.5) / grid
    r = np.hypot((x - CLICK_AT[0]) / 0.12, (y - CLICK_AT[1]) / 0.35)
    return (12.0 * (1.0 - r)).astype(np.float32)


def bench_job(pattern: str, count: int, out: str, edge: str, args, width: int, height: int):
    from mattebridge.core.track.job import TrackJob
    from mattebridge.core.wire.prompts import Prompts
    from mattebridge.core.wire.sequence import FrameRange

    prompts = Prompts()
    prompts.add_point("hero", FIRST, CLICK_AT[0] * width, CLICK_AT[1] * height)
    return TrackJob(
        plate=pattern,
        frames=FrameRange(FIRST, FIRST + count - 1),
        prompts=prompts,
        out=out,
        colorspace="ACEScg",
        direction="forward",
        edge=edge,
        force=True,  # every round writes every frame
        model_config=args.model_config,
        image_size=args.image_size,
        device=args.device,
    )


# --- the stand-in engine (this benchmark only) -------------------------------------------------------------
class StandInEngine:
    """An engine (core/engine/interface.py) whose tracker returns fixed logits at once: TrackRun timed without the
    model. Only this benchmark builds one."""

    name, family, sha256 = "stand-in", "stand-in", "0" * 64

    def __init__(self, image_size: int, device):
        import torch

        self.image_size, self.mask_size, self.device = image_size, image_size // 4, torch.device(device)

    def tracker(self, images, num_frames: int):
        return StandInTracker(images, self.mask_size, self.device)


class StandInTracker:
    """Pulls each frame's tensor from the feed onto the device as sam2 does, and returns fixed logits."""

    reach = 16

    def __init__(self, images, mask_size: int, device):
        self.images, self.device = images, device
        self.logits = standin_logits(mask_size)
        self.objects = []

    def add_prompt(self, index, obj, prompt):
        self.objects.append(obj)
        return self._frame(index)

    def propagate(self, start, stop, reverse=False, corrections=None):
        step = -1 if reverse else 1
        for index in range(start, stop + step, step):
            yield self._frame(index)

    def close(self) -> None:
        self.images = None

    def _frame(self, index):
        from mattebridge.core.engine.tracker import TrackerOutput

        self.images[index].to(self.device).float()
        return TrackerOutput(index, {o: self.logits for o in self.objects}, {o: 8.0 for o in self.objects}, {})


# --- the pipeline parts -------------------------------------------------------------------------------------
def pipeline(args, table: Table) -> None:
    import torch

    from mattebridge.core.engine.feed import ModelFeed
    from mattebridge.core.engine.tracker import TrackerOutput
    from mattebridge.core.image.matte_io import write_matte
    from mattebridge.core.image.plate import read_plate
    from mattebridge.core.matte.alpha import alpha_from_logits
    from mattebridge.core.paths import UNCONFINED
    from mattebridge.core.track.clip import prepare_clip
    from mattebridge.core.track.outputs import OutputFiles, check_outputs
    from mattebridge.core.track.post import MattePost, WriterPool, default_writers
    from mattebridge.core.track.run import TrackRun, refine_device
    from mattebridge.core.wire.sequence import FrameRange, frame_path

    n, rounds, device, size = args.frames, args.rounds, args.device, args.image_size
    grid = size // 4
    logits = standin_logits(grid)
    model = None
    for width, height in args.sizes:
        column = column_of(args, width, height)
        pattern = plates(args.work, width, height, n)
        frames = FrameRange(FIRST, FIRST + n - 1)
        clip = prepare_clip(pattern, frames, colorspace="ACEScg")
        out = os.path.join(args.work, f"out-{width}x{height}")
        cpu = {}

        def job(edge, name):
            return bench_job(pattern, n, os.path.join(out, name, "m.####.exr"), edge, args, width, height)

        if "floor" in args.parts:
            alpha = alpha_from_logits(logits, clip.geometry[FIRST], "raw").astype(np.float16)
            os.makedirs(os.path.join(out, "floor"), exist_ok=True)

            def floor():
                for f in frames:
                    plate = read_plate(frame_path(pattern, f))
                    write_matte(os.path.join(out, "floor", f"m.{f}.exr"), {"A": alpha}, plate.geometry, {"frame": f})

            wall, cpu["floor"] = timed_rounds(floor, rounds, n, device)
            table.add("floor: read_plate + write_matte (half A, ZIP), wall ms/frame", column, ms(wall))
            table.add("floor: CPU ms/frame", column, ms(cpu["floor"]))

        if "feed" in args.parts:

            def feed():
                feed = ModelFeed(list(frames), clip.read, size, clip.transform, device=device)
                try:
                    for i in range(n):
                        feed[i].to(device).float()
                finally:
                    feed.close()

            wall, c = timed_rounds(feed, rounds, n, device)
            table.add("feed alone (ModelFeed -> input on the device): frames/s", column, fps(wall))
            table.add("feed alone: CPU ms/frame", column, ms(c))

        for edge in ("soft", "raw") if "writer" in args.parts else ():
            writer_job = job(edge, f"writer-{edge}")
            post = MattePost(
                writer_job,
                grid,
                clip,
                refine_device(torch.device(device)),
                OutputFiles(UNCONFINED, check_outputs(writer_job, clip)),
                {"edge": edge},
            )

            def write():
                """As TrackRun writes: logits in frame order here, encoding on the writer pool."""
                post.new_pass()
                writers = WriterPool(default_writers())
                try:
                    for i, f in enumerate(frames):
                        writers.submit(post.encode, post.logits(f, TrackerOutput(i, {"hero": logits}, {"hero": 8.0})))
                        while writers.ready():
                            writers.take()
                    while len(writers):
                        writers.take()
                finally:
                    writers.close()

            wall, c = timed_rounds(write, rounds, n, device)
            table.add(
                f"writer alone (MattePost, {default_writers()} writer threads, {edge} edge): frames/s",
                column,
                fps(wall),
            )
            table.add(f"writer alone, {edge} edge: CPU ms/frame", column, ms(c))

        for edge in ("soft", "raw") if "stand-in" in args.parts else ():
            run_job = job(edge, f"standin-{edge}")

            def standin():
                for _ in TrackRun(run_job, clip, StandInEngine(size, device)):
                    pass

            wall, cpu[edge] = timed_rounds(standin, rounds, n, device)
            table.add(f"whole pipeline, stand-in engine, {edge} edge: frames/s", column, fps(wall))
            table.add(f"whole pipeline, stand-in engine, {edge} edge: CPU ms/frame", column, ms(cpu[edge]))
            if "floor" in cpu:
                table.add(
                    f"**CPU outside the model / floor, {edge} edge** (goal <= 2)",
                    column,
                    ratio(cpu[edge], cpu["floor"]),
                )

        if "model" in args.parts or "sam2" in args.parts:
            model = model or load_bench_model(args)
            e2e_job = job("soft", "model-soft")

            def end_to_end():
                for _ in TrackRun(e2e_job, clip, model):
                    pass

            e2e, _ = timed_rounds(end_to_end, rounds, n, device)
            table.add("end-to-end (TrackRun, soft edge, the model): frames/s", column, fps(e2e))

        if "model" in args.parts:
            feed = ModelFeed(list(frames), clip.read, size, clip.transform, device=model.device)
            try:
                inputs = [feed[i] for i in range(n)]
            finally:
                feed.close()
            bare, _ = timed_rounds(lambda: bare_model(model, inputs), rounds, n, device)
            table.add("bare model (its tracker on inputs already on the device): frames/s", column, fps(bare))
            table.add("**end-to-end / bare model frames/s** (goal >= 0.9 on a GPU)", column, ratio(bare, e2e))

        if "sam2" in args.parts:
            folder = os.path.join(args.work, f"jpegs-{width}x{height}x{n}@{size}")
            write_jpegs(clip, frames, size, folder)
            result = child(args, "sam2-one", "--jpegs", folder)
            table.add("bare SAM2VideoPredictor (sam2's propagate_in_video): frames/s", column, fps(result["per_frame"]))
            table.add("SAM2VideoPredictor init_state (decode the JPEGs): ms/frame", column, f"{result['init_ms']:.1f}")
            table.add(
                "**end-to-end / bare SAM2VideoPredictor frames/s** (goal >= 0.9 on a GPU)",
                column,
                ratio(result["per_frame"], e2e),
            )


def load_bench_model(args):
    """The random-weight model, warmed up (lazy initialisation and kernel choice are not part of any round)."""
    import torch

    from mattebridge.core.engine.models import load_model

    path = checkpoint(args.work, args.model_config)
    model = load_model(
        checkpoint=path,
        config=args.model_config,
        image_size=args.image_size,
        device=args.device,
        compile=args.compile,
    )
    bare_model(model, [torch.zeros(3, args.image_size, args.image_size, device=model.device)] * 2)
    return model


def bare_model(model, inputs) -> None:
    """The engine's own tracker (StreamingTracker for SAM 2.1) on model inputs already on the device: the model and
    nothing else."""
    from mattebridge.core.engine.tracker import ObjectPrompt

    tracker = model.tracker(inputs, len(inputs))
    try:
        tracker.add_prompt(0, "hero", ObjectPrompt(points=np.array([CLICK_AT], np.float32), labels=np.array([1])))
        for _ in tracker.propagate(0, len(inputs) - 1):
            pass
    finally:
        tracker.close()


def write_jpegs(clip, frames, size: int, folder: str) -> None:
    """What the model sees of each frame (model_view: display-referred, size x size) as the JPEGs sam2's
    init_state reads (named 00000.jpg, ...)."""
    from PIL import Image

    from mattebridge.core.engine.feed import model_view

    os.makedirs(folder, exist_ok=True)
    for i, f in enumerate(frames):
        rgb = model_view(clip.read(f), size, clip.transform)
        Image.fromarray(np.round(rgb * 255).astype(np.uint8)).save(os.path.join(folder, f"{i:05d}.jpg"), quality=95)


def sam2_one(args) -> dict:
    """sam2's own video predictor, as published: no mattebridge patches in this process."""
    import torch
    from sam2.build_sam import build_sam2_video_predictor

    from mattebridge.core.engine.models import config_path

    device = torch.device(args.device)
    predictor = build_sam2_video_predictor(
        config_path(args.model_config),
        checkpoint(args.work, args.model_config),
        device=str(device),
        hydra_overrides_extra=[f"++model.image_size={args.image_size}"],
        vos_optimized=args.compile,
    )
    n = len([f for f in os.listdir(args.jpegs) if f.endswith(".jpg")])
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    click = np.array([[CLICK_AT[0] * args.image_size, CLICK_AT[1] * args.image_size]], np.float32)
    with torch.inference_mode(), autocast:
        sync(device)
        t0 = time.perf_counter()
        state = predictor.init_state(video_path=args.jpegs)
        sync(device)
        init = time.perf_counter() - t0

        def track():
            predictor.reset_state(state)
            predictor.add_new_points_or_box(state, frame_idx=0, obj_id=1, points=click, labels=np.array([1], np.int32))
            for _ in predictor.propagate_in_video(state):
                pass

        per_frame, _ = timed_rounds(track, args.rounds, n, device)
    return {"per_frame": per_frame, "init_ms": 1000 * init / n}


def child(args, mode: str, *extra) -> dict:
    """Run a mode in a fresh process (its own peak memory, no patches of ours, sam2's progress bars off); its last
    stdout line is JSON."""
    cmd = [sys.executable, os.path.abspath(__file__), "--mode", mode, *common_flags(args), *extra]
    done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=dict(os.environ, TQDM_DISABLE="1"))
    if done.returncode:
        raise SystemExit(f"{mode}: child process failed (exit {done.returncode}): {' '.join(cmd)}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def common_flags(args):
    return [
        "--sizes",
        ",".join(f"{w}x{h}" for w, h in args.sizes),
        "--frames",
        str(args.frames),
        "--rounds",
        str(args.rounds),
        "--device",
        args.device,
        "--image-size",
        str(args.image_size),
        "--model-config",
        args.model_config,
        "--work",
        args.work,
        "--edge",
        args.edge,
    ] + (["--compile"] if args.compile else [])


# --- memory: a whole run per length, each in its own process -----------------------------------------------
def memory(args, table: Table) -> None:
    width, height = args.sizes[0]
    column = column_of(args, width, height)
    plates(args.work, width, height, max(args.memory_frames))
    checkpoint(args.work, args.model_config)
    for count in args.memory_frames:
        r = child(args, "memory-one", "--count", str(count), "--memory-frames", str(max(args.memory_frames)))
        what = f"whole run, {count} frames ({args.edge} edge)"
        table.add(f"{what}: end-to-end frames/s", column, f"{r['fps']:.2f}")
        if r["gpu_mib"] is not None:
            table.add(f"{what}: peak GPU memory MiB (max_memory_allocated)", column, f"{r['gpu_mib']:.0f}")
        table.add(f"{what}: peak RSS MiB", column, f"{r['rss_mib']:.0f}")


def memory_one(args) -> dict:
    import torch

    from mattebridge.core.track.clip import prepare_clip
    from mattebridge.core.track.run import TrackRun
    from mattebridge.core.wire.sequence import FrameRange

    width, height = args.sizes[0]
    pattern = plates(args.work, width, height, max(args.memory_frames))
    clip = prepare_clip(pattern, FrameRange(FIRST, FIRST + args.count - 1), colorspace="ACEScg")
    out = os.path.join(args.work, f"out-memory-{width}x{height}", "m.####.exr")
    model = load_bench_model(args)
    cuda = model.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(model.device)
    t0 = time.perf_counter()
    for _ in TrackRun(bench_job(pattern, args.count, out, args.edge, args, width, height), clip, model):
        pass
    sync(model.device)
    return {
        "fps": args.count / (time.perf_counter() - t0),
        "gpu_mib": torch.cuda.max_memory_allocated(model.device) / 2**20 if cuda else None,
        "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


# --- clicks: a real server, idle and during another client's propagation -----------------------------------
@contextlib.contextmanager
def server(args):
    """A real `mattebridge serve` on loopback with the random-weight model, allowed to read the work folder."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    cmd = [sys.executable, "-m", "mattebridge.cli", "serve", "--bind", address, "--allow-root", args.work]
    cmd += ["--log-level", "warning", "--device", args.device, "--image-size", str(args.image_size)]
    cmd += ["--checkpoint", checkpoint(args.work, args.model_config), "--model-config", args.model_config]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        while "ready on" not in proc.stdout.readline():
            if proc.poll() is not None:
                raise SystemExit(f"server did not start (exit {proc.returncode}): {' '.join(cmd)}")
        yield address
    finally:
        proc.terminate()
        proc.wait(60)


def clicks(args, table: Table) -> None:
    from server_bench import pct

    from mattebridge.core.wire.client import Client

    width, height = args.sizes[0]
    column = column_of(args, width, height)
    pattern = plates(args.work, width, height, args.frames)
    last = FIRST + args.frames - 1

    def series(address):
        """Clicks on a few frames: the first on each computes the frame's features, the rest reuse them."""
        first, cached = [], []
        with Client(address, timeout=600) as c:
            clip = c.open_clip(pattern, f"{FIRST}-{last}", colorspace="ACEScg")
            for frame in (FIRST + k * args.frames // 3 for k in range(3)):
                for k in range(args.clicks + 1):
                    t0 = time.perf_counter()
                    clip.prompt(frame, "hero", points=[((CLICK_AT[0] + 0.002 * k) * width, CLICK_AT[1] * height, True)])
                    (cached if k else first).append(time.perf_counter() - t0)
            clip.close()
        return first, cached

    def propagate(address, stop: threading.Event, started: threading.Event):
        prompts = {
            "version": 1,
            "objects": [{"name": "bg", "frames": [{"frame": FIRST, "points": [{"x": 9, "y": 9}]}]}],
        }
        with Client(address, timeout=600) as c:
            clip = c.open_clip(pattern, f"{FIRST}-{last}", colorspace="ACEScg")
            while not stop.is_set():
                run = clip.propagate(direction="forward", buffers=True, force=True, prompts=prompts)
                for _ in run:
                    started.set()
                    if stop.is_set():
                        run.cancel()
                        break
                for _ in run:
                    pass

    def p50_p99(values):
        return f"{1000 * pct(values, 50):.0f} / {1000 * pct(values, 99):.0f}"

    with server(args) as address:
        idle_first, idle = series(address)
        stop, started = threading.Event(), threading.Event()
        worker = threading.Thread(target=propagate, args=(address, stop, started))
        worker.start()
        started.wait(600)
        busy_first, busy = series(address)
        stop.set()
        worker.join()
    table.add(
        "click -> matte, features cached, server idle: p50 / p99 ms (goal p50 <= 50 at 4K)", column, p50_p99(idle)
    )
    table.add(
        "click -> matte, features cached, during a propagation: p50 / p99 ms (goal p99 <= 150)", column, p50_p99(busy)
    )
    table.add("click -> matte, first click on a frame, idle: p50 / p99 ms", column, p50_p99(idle_first))
    table.add("click -> matte, first click on a frame, during a propagation: p50 / p99 ms", column, p50_p99(busy_first))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--mode", default="pipeline", choices=("pipeline", "clicks", "memory", "table", "sam2-one", "memory-one")
    )
    p.add_argument("--sizes", default="1080p,4k", help="1080p, 4k or WIDTHxHEIGHT, comma-separated")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--image-size", type=int, help="the model's input size (default 256 on CPU, 1024 on CUDA)")
    p.add_argument("--model-config", default="sam2.1_hiera_t", help="random weights of this sam2 config")
    p.add_argument("--parts", default=",".join(PARTS), help=f"pipeline mode: which of {', '.join(PARTS)}")
    p.add_argument("--compile", action="store_true", help="the model as `--compile` builds it (CUDA and Triton)")
    p.add_argument("--edge", default="soft", help="memory mode: the edge of the whole runs")
    p.add_argument("--memory-frames", default="100,1000", help="memory mode: run lengths")
    p.add_argument("--clicks", type=int, default=10, help="clicks mode: cached clicks per frame (3 frames)")
    p.add_argument("--work", help="where plates, checkpoints and mattes go (default: a temporary folder)")
    p.add_argument("--json", help="also append every cell to this JSON-lines file (table mode: read it)")
    p.add_argument("--jpegs", help=argparse.SUPPRESS)
    p.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.mode == "table":
        print(Table.load(args.json).markdown())
        return 0
    args.sizes = [parse_size(s) for s in args.sizes.split(",")]
    args.parts = set(args.parts.split(","))
    args.memory_frames = [int(v) for v in args.memory_frames.split(",")]
    args.image_size = args.image_size or (1024 if args.device.startswith("cuda") else 256)
    with contextlib.ExitStack() as stack:
        if not args.work:
            args.work = stack.enter_context(tempfile.TemporaryDirectory(prefix="mattebridge-throughput-"))
        if args.mode in ("sam2-one", "memory-one"):
            print(json.dumps((sam2_one if args.mode == "sam2-one" else memory_one)(args)))
            return 0
        table = Table(args.json)
        print(
            f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}; device {args.device}; "
            f"{args.frames} frames, {args.rounds} rounds; cells: best / median round",
            file=sys.stderr,
        )
        {"pipeline": pipeline, "clicks": clicks, "memory": memory}[args.mode](args, table)
        print(table.markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
