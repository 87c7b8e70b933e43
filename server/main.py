"""`mattebridge serve` and `mattebridge keys`: arguments -> a running server."""

from __future__ import annotations

import logging
import os
import sys

from mattebridge.core.wire.vocabulary import DEFAULT_ADDRESS

from .access import check_bind, create_keys, default_roots, load_server_keys
from .limits import FEATURE_CACHE_MB, MAX_CLIPS_PER_CLIENT, MAX_FRAME_PIXELS, MAX_OBJECTS


def _positive(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number > 0")
    return value


def _devices(text: str) -> list:
    """`cuda:0,cuda:1`: one model worker per entry (an entry may repeat: two copies of the model on one device)."""
    import argparse
    import re

    names = [n.strip() for n in text.split(",")]
    for name in names:
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d{1,3})?", name):
            raise argparse.ArgumentTypeError(f"{name!r}: expected a comma-separated list of cpu, cuda, cuda:N or mps")
    return names


def add_serve_arguments(p) -> None:
    p.add_argument("--bind", default=DEFAULT_ADDRESS, help=f"address to listen on (default {DEFAULT_ADDRESS})")
    p.add_argument(
        "--allow-root",
        action="append",
        default=[],
        metavar="DIR",
        help="a folder whose files the server may read or write (repeatable; "
        "default: the current folder and the system temp folder)",
    )
    p.add_argument("--keys", metavar="DIR", help="CurveZMQ keys (from `mattebridge keys DIR`): required off loopback")
    p.add_argument(
        "--client-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="free a client's clips and jobs after this long without a message or heartbeat",
    )
    p.add_argument(
        "--devices",
        type=_devices,
        metavar="LIST",
        help="one model worker process per device, each with its own copy of the model, e.g. cuda:0,cuda:1 "
        "(default: the one --device); a clip stays on the worker that opened it, new clips go to the least loaded",
    )
    p.add_argument("--max-queue", type=int, default=32, help="waiting requests before new ones get `busy`")
    p.add_argument("--max-jobs", type=int, default=8, help="propagations running at once on each device")
    p.add_argument(
        "--max-clips-per-client",
        type=_positive,
        default=MAX_CLIPS_PER_CLIENT,
        metavar="N",
        help=f"clips one client may hold open; more get `busy` (default {MAX_CLIPS_PER_CLIENT})",
    )
    p.add_argument(
        "--max-objects",
        type=_positive,
        default=MAX_OBJECTS,
        metavar="N",
        help=f"objects one clip may be prompted with, and one propagation may track; more get "
        f"`bad_field` (default {MAX_OBJECTS})",
    )
    p.add_argument(
        "--max-frame-pixels",
        type=_positive,
        default=MAX_FRAME_PIXELS,
        metavar="N",
        help=f"largest frame (width x height of its data window, and of its display window) taken "
        f"by any transport: files, shared memory or inline; larger gets `too_large` "
        f"(default {MAX_FRAME_PIXELS} = 8192x8192, 8K plates with overscan)",
    )
    p.add_argument(
        "--feature-cache-mb",
        type=_positive,
        default=FEATURE_CACHE_MB,
        metavar="MIB",
        help=f"image features of clicked frames kept for the next click, every clip's together, on each model "
        f"device; least recently clicked dropped first (default {FEATURE_CACHE_MB})",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def serve(args) -> int:
    from .app import Server

    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    check_bind(args.bind, args.keys)
    if args.keys:
        load_server_keys(args.keys)  # refuse bad or exposed keys now, not after loading the model
    # Whatever the server writes is its owner's alone (mattes 0600): another local user who asks it for a cut-out
    # of a plate they cannot read gets no file they can read. Its workers inherit this.
    os.umask(os.umask(0o077) | 0o077)
    options = {
        "checkpoint": args.checkpoint,
        "config": args.model_config,
        "image_size": args.image_size,
        "compile": args.compile,
    }
    Server(
        args.bind,
        args.devices or [args.device],
        {"name": args.model, "options": options},
        default_roots(args.allow_root),
        keys=args.keys,
        client_timeout=args.client_timeout,
        max_queue=args.max_queue,
        max_jobs=args.max_jobs,
        max_clips_per_client=args.max_clips_per_client,
        max_objects=args.max_objects,
        max_frame_pixels=args.max_frame_pixels,
        feature_cache_mb=args.feature_cache_mb,
        log_level=args.log_level,
    ).run()
    return 0


def keys(args) -> int:
    public = create_keys(args.dir)
    print(public)
    print(
        f"clients need {public} (e.g. `mattebridge track --server ADDR --server-key {public}`); "
        f"to allow only some clients, put their public keys in {args.dir}/clients/",
        file=sys.stderr,
    )
    return 0
