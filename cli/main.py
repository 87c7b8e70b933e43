"""`mattebridge`: track, models, demo."""

from __future__ import annotations

import argparse
import os
import sys
import time

from mattebridge.core import __version__
from mattebridge.core.errors import FieldError, MatteBridgeError
from mattebridge.core.wire.prompts import Prompts, parse_numbers, split_frame
from mattebridge.core.wire.sequence import FrameRange
from mattebridge.core.wire.vocabulary import (
    DEFAULT_ADDRESS,
    DEFAULT_OBJECT,
    DIRECTIONS,
    EDGE_MODES,
    LAYOUTS,
    MATTE_CHANNELS,
)

DEFAULT_MODEL = "sam2.1_hiera_small"


def _add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", default=DEFAULT_MODEL, help="published model name (see `mattebridge models list`)")
    g.add_argument("--checkpoint", help="other weights: a checkpoint file (loaded weights-only)")
    g.add_argument("--model-config", help="sam2 config for --checkpoint: short name (sam2.1_hiera_t) or config path")
    g.add_argument(
        "--image-size", type=int, help="model input size in pixels (multiple of 32; default: the model's 1024)"
    )
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")


def _add_compile_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the model (sam2's compiled video predictor; bf16 as without): faster frames once the "
        "first ones have compiled its kernels, which takes minutes. CUDA with Triton only; refused on a CPU or "
        "Metal device",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mattebridge", description="SAM 2.1 alpha mattes for VFX plates.")
    parser.add_argument("--version", action="version", version=f"mattebridge {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("track", help="track prompts through a plate sequence and write alpha EXRs")
    t.add_argument("plate", help="plate sequence, e.g. plate.####.exr or plate.%%04d.exr")
    t.add_argument("--frames", required=True, help="frame range FIRST-LAST, e.g. 1001-1100")
    t.add_argument(
        "--out", required=True, help="matte pattern, e.g. mattes/hero.####.exr ({object} for several objects)"
    )
    t.add_argument(
        "--point",
        action="append",
        default=[],
        metavar="X,Y[@F]",
        help="foreground click (display-window pixels, y down)",
    )
    t.add_argument("--negative", action="append", default=[], metavar="X,Y[@F]", help="background click")
    t.add_argument("--box", action="append", default=[], metavar="X0,Y0,X1,Y1[@F]", help="box around the subject")
    t.add_argument(
        "--mask", action="append", default=[], metavar="PATH[@F]", help="mask image (its alpha or only channel)"
    )
    t.add_argument("--object", default=DEFAULT_OBJECT, help=f"object the flags above prompt (default {DEFAULT_OBJECT})")
    t.add_argument("--prompts", help="prompts JSON for several objects (docs/prompts.md)")
    t.add_argument("--layer", help="EXR part or layer to read (default: RGB of the first part)")
    t.add_argument("--colorspace", help="plate colour space (default: file metadata, else scene_linear/sRGB)")
    t.add_argument("--ocio", help="OCIO config path or ocio:// URI (default: $OCIO, else ocio://studio-config-latest)")
    t.add_argument("--view", help='display/view the model sees the plate through, "DISPLAY/VIEW"')
    t.add_argument("--direction", default="both", choices=DIRECTIONS)
    t.add_argument(
        "--edge",
        default="soft",
        choices=EDGE_MODES,
        help="soft: refined against the plate; raw: sigmoid of the model's logits; hard: logits > 0; matte: a "
        "matting model (ViTMatte) predicts alpha in the edge band at full plate resolution",
    )
    t.add_argument(
        "--matte-model",
        metavar="NAME|DIR",
        help="--edge matte's model: a catalogue name (default vitmatte-small-composition-1k) or a ViTMatte folder",
    )
    t.add_argument(
        "--matte-tile",
        type=int,
        default=512,
        metavar="PX",
        help="--edge matte: tile side (multiple of 32, default 512); bounds the matting pass's memory",
    )
    t.add_argument(
        "--fill-holes",
        type=int,
        default=0,
        metavar="PIXELS",
        help="remove holes and islands up to this area in plate pixels (default 0: off)",
    )
    t.add_argument(
        "--stabilize",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="temporal smoothing of still regions (default: on for soft and hard edges, off for raw)",
    )
    t.add_argument(
        "--layout",
        default="files",
        choices=LAYOUTS,
        help="files: one EXR per object; layers: <object>.A in one EXR; cryptomatte: layers + Cryptomatte",
    )
    t.add_argument("--report", metavar="FILE", help="QC table of frames to check first: FILE.json and FILE.csv")
    t.add_argument(
        "--cutout",
        metavar="PATTERN",
        help="also write the plate premultiplied by the matte (--edge matte: the estimated foreground colour)",
    )
    t.add_argument(
        "--foreground",
        metavar="PATTERN",
        help="also write the estimated foreground colour x the matte (RGBA premultiplied, linear: no background "
        "spill in hair; needs the matting extra)",
    )
    t.add_argument(
        "--matte-channels",
        default="A",
        choices=MATTE_CHANNELS,
        help="A, or RGBA: the matte in R, G, B and A (Blender's Mask modifier, Resolve's Ext Matte)",
    )
    t.add_argument("--force", action="store_true", help="recompute frames already written by the same job")
    t.add_argument("--server", metavar="ADDR", help=f"track on a running `mattebridge serve`, e.g. {DEFAULT_ADDRESS}")
    t.add_argument(
        "--server-key", metavar="FILE", help="the server's CurveZMQ public key (servers started with --keys)"
    )
    t.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="with --server: seconds without an answer before the server counts as gone (default 10)",
    )
    _add_model_args(t)
    _add_compile_arg(t)

    m = sub.add_parser("models", help="list, download or locate the trackers' weights (SAM 2.1, SAM 3, EdgeTAM)")
    msub = m.add_subparsers(dest="action", required=True)
    msub.add_parser("list")
    for action in ("download", "path"):
        a = msub.add_parser(action)
        a.add_argument("name")
        if action == "download":
            a.add_argument("--revision", help="a hub commit to fetch instead of the catalogue's pin (transformers)")

    s = sub.add_parser("serve", help="serve one resident model to every host on this workstation (ZeroMQ)")
    from mattebridge.server.main import add_serve_arguments

    add_serve_arguments(s)
    _add_model_args(s)
    _add_compile_arg(s)

    pk = sub.add_parser(
        "pick", help="prompt window: click prompts on a plate, see mattes live, track (needs `mattebridge serve`)"
    )
    from mattebridge.core.picker import add_arguments as add_pick_arguments

    add_pick_arguments(pk)

    k = sub.add_parser("keys", help="create a CurveZMQ server key pair for `serve --keys`")
    k.add_argument("dir", help="folder for server.key (public: give it to clients) and server.key_secret")

    d = sub.add_parser("demo", help="make a synthetic plate and track it end to end")
    d.add_argument("--dir", default="mattebridge-demo", help="where the demo plate and mattes go")
    d.add_argument(
        "--random-weights", action="store_true", help="use a random-weight model (offline check of the pipeline)"
    )
    _add_model_args(d)
    d.set_defaults(model="sam2.1_hiera_tiny")
    _add_farm_parser(sub)
    return parser


def prompts_from_args(args, first_frame: int) -> Prompts:
    prompts = Prompts.load(args.prompts) if args.prompts else Prompts()
    for flag, specs, positive in (("--point", args.point, True), ("--negative", args.negative, False)):
        for spec in specs:
            body, frame = split_frame(spec, first_frame, flag)
            x, y = parse_numbers(body, 2, flag, spec)
            prompts.add_point(args.object, frame, x, y, positive)
    for spec in args.box:
        body, frame = split_frame(spec, first_frame, "--box")
        prompts.set_box(args.object, frame, parse_numbers(body, 4, "--box", spec))
    for spec in args.mask:
        body, frame = split_frame(spec, first_frame, "--mask")
        prompts.set_mask(args.object, frame, body)
    return prompts


def cmd_track(args) -> int:
    from mattebridge.core.track.job import TrackJob
    from mattebridge.core.track.progress import ProgressBar
    from mattebridge.core.track.run import run_track

    frames = FrameRange.parse(args.frames)
    job = TrackJob(
        plate=args.plate,
        frames=frames,
        prompts=prompts_from_args(args, frames.first),
        out=args.out,
        layer=args.layer,
        colorspace=args.colorspace,
        ocio=args.ocio,
        view=args.view,
        direction=args.direction,
        edge=args.edge,
        fill_holes=args.fill_holes,
        stabilize=args.stabilize,
        layout=args.layout,
        report=args.report,
        cutout=args.cutout,
        foreground=args.foreground,
        matte_model=args.matte_model,
        matte_tile=args.matte_tile,
        channels=args.matte_channels,
        force=args.force,
        prompts_file=args.prompts,
        model=args.model,
        checkpoint=args.checkpoint,
        model_config=args.model_config,
        image_size=args.image_size,
        device=args.device,
    )
    start = time.monotonic()
    if args.server:
        from mattebridge.core.track.remote import track_on_server

        chosen = (  # flag, value, default: what a server chose when it started
            ("--model", args.model, DEFAULT_MODEL),
            ("--checkpoint", args.checkpoint, None),
            ("--model-config", args.model_config, None),
            ("--image-size", args.image_size, None),
            ("--device", args.device, "auto"),
            ("--compile", args.compile, False),
            ("--matte-model", args.matte_model, None),
        )
        given = [flag for flag, value, default in chosen if value != default]
        if given:
            raise MatteBridgeError(
                f"{', '.join(given)}: chosen where `mattebridge serve` starts, not with --server (its model is its own)"
            )

        stats = track_on_server(
            job,
            args.server,
            args.server_key,
            args.timeout,
            progress=ProgressBar("track"),
            log=lambda s: print(s, file=sys.stderr),
        )
    else:
        stats = run_track(
            job, progress=ProgressBar("track"), log=lambda s: print(s, file=sys.stderr), compile=args.compile
        )
    skipped = f" ({stats.frames_skipped} already done)" if stats.frames_skipped else ""
    print(
        f"wrote {stats.frames_written} frames x {len(job.prompts.objects)} object(s) to {args.out}{skipped} "
        f"in {time.monotonic() - start:.1f}s",
        file=sys.stderr,
    )
    return 0


def cmd_models(args) -> int:
    from mattebridge.core.engine import catalog, models

    if args.action == "list":
        for row in catalog.listing():
            state = "downloaded" if row["present"] else "not downloaded"
            print(
                f"{row['name']:24s} {row['family']:13s} {row['size']:24s} {row['licence']:16s} {state:15s} "
                f"{row['source']}"
            )
    elif args.action == "path":
        entry = catalog.entry(args.name)
        print(models.model_path(args.name) if entry.engine == "sam2" else catalog.model_dir(args.name))
    elif catalog.entry(args.name).engine == "sam2":
        print(f"downloading {args.name} from {models.model_url(args.name)}", file=sys.stderr)
        path = models.download(args.name, progress=models.describe_progress)
        print(file=sys.stderr)
        print(path)
    else:
        print(catalog.download(args.name, args.revision, log=lambda s: print(s, file=sys.stderr)))
    return 0


def cmd_serve(args) -> int:
    from mattebridge.server.main import serve

    return serve(args)


def cmd_pick(args) -> int:
    from mattebridge.core.picker import run

    return run(args)


def cmd_keys(args) -> int:
    from mattebridge.server.main import keys

    return keys(args)


def cmd_demo(args) -> int:
    from mattebridge.core.track.demo import run_demo

    return run_demo(args)


def _add_farm_parser(sub) -> None:
    f = sub.add_parser(
        "farm", help="a show's shots as an Open Job Description job bundle for the render farm (docs/farm.md)"
    )
    f.add_argument("shots", nargs="?", metavar="SHOTS", help="the shots: a CSV file or a JSON list (docs/farm.md)")
    f.add_argument("--bundle", metavar="DIR", help="write the job bundle here (template.yaml, parameter_values.yaml)")
    f.add_argument("--cpu", action="store_true", help="tasks run on CPU nodes (default: each needs a GPU)")
    f.add_argument("--chunk-objects", action="store_true", help="one task per shot and object (default: per shot)")
    f.add_argument("--model", default=DEFAULT_MODEL, help="published model the job pins (name and SHA-256)")
    f.add_argument("--checkpoint", help="pin these weights instead (by file name and SHA-256; needs --model-config)")
    f.add_argument("--model-config", help="sam2 config for --checkpoint, e.g. sam2.1_hiera_t")
    f.add_argument("--image-size", type=int, help="model input size in pixels (default: the model's 1024)")
    f.add_argument("--model-cache", metavar="DIR", help="the nodes' model cache (default: this machine's)")
    f.add_argument("--reports", metavar="DIR", help="QC and show reports (default: reports/ next to SHOTS)")
    f.add_argument("--python", metavar="PATH", help="the nodes' Python with mattebridge (default: this one)")
    f.add_argument("--gpu-memory", type=int, metavar="MIB", help="GPU memory a task reserves (default: by model)")
    f.add_argument(
        "--min-confidence",
        type=float,
        default=0.5,
        help="show report: frames with a predicted IoU below this (default 0.5)",
    )
    # What the job's own tasks run (the template passes them): not for people.
    f.add_argument("--task", action="store_true", help=argparse.SUPPRESS)
    f.add_argument("--gather", metavar="FILE", help=argparse.SUPPRESS)
    for name in ("--shot", "--plate", "--frames", "--prompts", "--out", "--options", "--object", "--sha256"):
        f.add_argument(name, help=argparse.SUPPRESS)
    f.add_argument("--device", default="cuda", help=argparse.SUPPRESS)


def cmd_farm(args) -> int:
    if args.task:
        from mattebridge.core.farm.task import ModelPin, track_args

        pin = ModelPin(args.model, args.sha256, args.checkpoint, args.model_config)
        argv, env = track_args(
            shot=args.shot,
            plate=args.plate,
            frames=args.frames,
            prompts=args.prompts,
            out=args.out,
            options=args.options,
            obj=args.object,
            reports=args.reports,
            cache=args.model_cache,
            pin=pin,
            device=args.device,
            image_size=args.image_size,
        )
        os.environ.update(env)
        os.chdir(os.path.dirname(args.prompts))  # mask paths in a prompts file resolve against its folder
        print(f"shot {args.shot}: mattebridge {' '.join(argv)}", file=sys.stderr)
        return main((["--debug"] if args.debug else []) + argv)
    if args.gather:
        from mattebridge.core.farm.report import gather
        from mattebridge.core.wire.protocol import load_json

        with open(args.gather, "rb") as fh:
            rows = gather(args.reports, load_json(fh.read()), args.min_confidence)
        print(f"show report: {len(rows)} shot/object rows in {os.path.join(args.reports, 'show_report.csv')}")
        return 0
    if not args.shots or not args.bundle:
        raise MatteBridgeError("farm: give SHOTS and --bundle DIR")
    from mattebridge.core.farm.bundle import FarmSettings, write_bundle
    from mattebridge.core.farm.shots import load_shots
    from mattebridge.core.farm.task import ModelPin

    shots = load_shots(args.shots)  # the user's mistakes first, before sam2 is imported
    if args.checkpoint:
        from mattebridge.core.engine.models import config_path, sha256_of

        if not args.model_config:
            raise MatteBridgeError("--checkpoint needs --model-config (e.g. sam2.1_hiera_t)")
        if not os.path.isfile(args.checkpoint):
            raise MatteBridgeError(f"--checkpoint {args.checkpoint}: no such file")
        config_path(args.model_config)
        name = os.path.basename(args.checkpoint)
        pin = ModelPin(name, sha256_of(args.checkpoint), name, args.model_config)
        cache = args.model_cache or os.path.dirname(os.path.abspath(args.checkpoint))
    else:
        from mattebridge.core.engine.models import cache_dir, model_info

        info = model_info(args.model)
        pin = ModelPin(info.name, info.sha256, None, args.model_config)
        cache = args.model_cache or cache_dir()
    settings = FarmSettings(
        pin=pin,
        model_cache=os.path.abspath(cache),
        reports=os.path.abspath(args.reports or os.path.join(os.path.dirname(os.path.abspath(args.shots)), "reports")),
        python=args.python or sys.executable,
        cpu=args.cpu,
        chunk_objects=args.chunk_objects,
        image_size=args.image_size,
        gpu_memory=args.gpu_memory,
        min_confidence=args.min_confidence,
        name=f"mattebridge {os.path.splitext(os.path.basename(args.shots))[0]}",
    )
    written = write_bundle(args.bundle, shots, settings)
    print(f"{len(shots)} shot(s) -> {', '.join(written)}", file=sys.stderr)
    return 0


# Wire field -> the command-line flag that sets it, where the names differ ("--" + field otherwise).
FLAGS = {
    "channels": "--matte-channels",
    "pattern": "plate",
    "fill_holes": "--fill-holes",
    "matte_tile": "--matte-tile",
    "matte_model": "--matte-model",
}


def cli_message(e: MatteBridgeError) -> str:
    """Core errors name the job's fields as the wire does; here each names the flag a user typed."""
    if isinstance(e, FieldError):
        return FLAGS.get(e.field, "--" + e.field) + e.detail
    return str(e)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        handler = {
            "track": cmd_track,
            "models": cmd_models,
            "demo": cmd_demo,
            "serve": cmd_serve,
            "keys": cmd_keys,
            "pick": cmd_pick,
            "farm": cmd_farm,
        }[args.command]
        return handler(args)
    except MatteBridgeError as e:
        if args.debug:
            raise
        print(f"mattebridge: error: {cli_message(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mattebridge: interrupted", file=sys.stderr)
        return 130
