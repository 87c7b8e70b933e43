"""`mattebridge pick`: the prompt window, a desktop client of `mattebridge serve` (docs/picker.md).

This module only defines the command line; Qt (PySide6, the `picker` extra) is imported when the
window opens, so `mattebridge --help` works without it.
"""

from __future__ import annotations

import argparse
import os

from mattebridge.core.wire.vocabulary import DEFAULT_ADDRESS, DIRECTIONS, EDGE_MODES, MATTE_CHANNELS

# exit codes a calling host can rely on (and the "status" of the --print-result JSON)
EXIT_DONE = 0  # tracked: the mattes are on disk            ("done"; --check: the server answers, "ok")
EXIT_CLOSED = 1  # closed or cancelled before a track finished ("closed", "cancelled")
EXIT_USAGE = 2  # bad arguments, unreadable plate or prompts  ("error")
EXIT_SERVER = 3  # the server is not reachable or failed       ("error")


def default_server() -> str:
    return os.environ.get("MATTEBRIDGE_SERVER") or DEFAULT_ADDRESS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("plate", help="plate sequence (plate.####.exr, plate.%%04d.exr) or a single image file")
    parser.add_argument(
        "--frames", help="frame range FIRST-LAST (default: the frames on disk; a single file is one frame)"
    )
    parser.add_argument(
        "--frame", type=int, help="frame to open on (default: the first prompted frame, else the first)"
    )
    parser.add_argument(
        "--server",
        default=default_server(),
        metavar="ADDR",
        help=f"the running `mattebridge serve` (default: $MATTEBRIDGE_SERVER, else {DEFAULT_ADDRESS})",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="seconds to wait for the server before it counts as unreachable (default 30)",
    )
    parser.add_argument("--prompts", metavar="FILE", help="prompts JSON to start from (docs/prompts.md)")
    parser.add_argument(
        "--save", metavar="FILE", help="where the prompts JSON is saved (Ctrl+S, at every Track and on close)"
    )
    parser.add_argument("--layer", help="EXR part or layer to read (default: RGB of the first part)")
    parser.add_argument("--colorspace", help="plate colour space (default: file metadata, else scene_linear/sRGB)")
    parser.add_argument(
        "--ocio", help="OCIO config path or ocio:// URI (default: $OCIO, else ocio://studio-config-latest)"
    )
    parser.add_argument(
        "--view", help='display/view the plate is shown (and the model sees it) through, "DISPLAY/VIEW"'
    )
    parser.add_argument(
        "--out",
        metavar="PATTERN",
        help="matte files for Track, e.g. mattes/{object}.####.exr "
        "(default: <plate folder>/mattes/<plate name>_{object}.####.exr)",
    )
    parser.add_argument(
        "--channels",
        default="A",
        choices=MATTE_CHANNELS,
        help="A, or RGBA: the matte in R, G, B and A (Resolve's Ext Matte, Blender's Mask modifier)",
    )
    parser.add_argument(
        "--direction", default="both", choices=DIRECTIONS, help="initial Track direction (default both)"
    )
    parser.add_argument("--edge", default="soft", choices=EDGE_MODES, help="matte edges (default soft)")
    parser.add_argument(
        "--preview-size",
        type=int,
        default=2048,
        metavar="PIXELS",
        help="longest side the plate is shown at (default 2048; clicks keep full plate precision)",
    )
    parser.add_argument(
        "--on-done",
        default="stay",
        choices=["stay", "exit"],
        help="after a Track finishes: keep the window open, or close it (exit code 0)",
    )
    parser.add_argument(
        "--auto-track", action="store_true", help="no clicking: track --prompts at once, then exit (progress is shown)"
    )
    parser.add_argument(
        "--print-result",
        action="store_true",
        help="at exit, print the outcome as one JSON line on stdout (status, matte paths per object, ...)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="only check that the server answers (exit 0, or 3 with a one-line reason); no window",
    )
    parser.add_argument("--title", help="window title (e.g. the host's clip name)")


def run(args) -> int:
    """Open the window; the exit code is one of EXIT_*. Errors before the window are MatteBridgeError."""
    from .app import run_app

    return run_app(args)
