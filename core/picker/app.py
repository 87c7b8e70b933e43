"""`mattebridge pick`: options -> the window -> exit code (and the result as JSON for a calling host)."""

from __future__ import annotations

import json
import os
import re
import signal
import sys

from mattebridge.core.errors import MatteBridgeError
from mattebridge.core.wire.sequence import has_frame_token
from mattebridge.core.wire.vocabulary import MATTE_CHANNELS

from . import EXIT_CLOSED, EXIT_DONE, EXIT_SERVER, EXIT_USAGE

_TOKEN = re.compile(r"#+|@+|%0?(\d*)d")


def default_out(plate: str, single: bool) -> str:
    """Mattes next to the plate: <plate folder>/mattes/<plate name>_{object}.####.exr"""
    folder, name = os.path.split(os.path.abspath(plate))
    m = _TOKEN.search(name) if has_frame_token(name) else None
    width = 4
    if m is not None:
        width = len(m.group(0)) if m.group(0)[0] in "#@" else int(m.group(1) or 4)
        name = name[: m.start()] + name[m.end() :]
    stem = os.path.splitext(name)[0].rstrip("._- ") or "plate"
    token = "" if single and m is None else "." + "#" * max(width, 1)
    return os.path.join(folder, "mattes", f"{stem}_{{object}}{token}.exr")


def options_from_args(args):
    from .document import PromptDocument
    from .plates import plate_frames
    from .window import PickOptions

    if args.channels not in MATTE_CHANNELS:
        raise MatteBridgeError(f"--channels {args.channels!r}: expected A or RGBA")
    frames = plate_frames(args.plate, args.frames, args.frame)
    doc = None
    if args.prompts:
        if not os.path.exists(args.prompts):
            raise MatteBridgeError(f"{args.prompts}: prompts file not found")
        doc = PromptDocument.load(args.prompts)
    frame = args.frame
    if frame is None:
        prompted = doc.frames() if doc is not None else []
        frame = prompted[0] if prompted and prompted[0] in frames else frames.first
    if frame not in frames:
        raise MatteBridgeError(f"--frame {frame}: outside the plate's frames {frames}")
    if args.auto_track and doc is None:
        raise MatteBridgeError("--auto-track needs --prompts (the prompts to track)")
    out = args.out or default_out(args.plate, len(frames) == 1)
    options = PickOptions(
        plate=os.path.abspath(args.plate),
        frames=frames,
        frame=frame,
        server=args.server,
        timeout=args.timeout,
        prompts=args.prompts,
        save=os.path.abspath(args.save) if args.save else None,
        out=out,
        channels=args.channels,
        direction=args.direction,
        edge=args.edge,
        layer=args.layer,
        colorspace=args.colorspace,
        ocio=args.ocio,
        view=args.view,
        preview_size=args.preview_size,
        on_done=args.on_done,
        auto_track=args.auto_track,
        title=args.title,
    )
    return options, doc


def emit_result(result: dict) -> None:
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def check_server(address: str, timeout: float) -> dict:
    """Is a mattebridge server answering at `address`? {"status": "ok"|"error", ...}"""
    from mattebridge.core.wire.client import Client, ServerUnreachable

    try:
        client = Client(address, timeout=timeout)
    except Exception as e:
        return {"status": "error", "message": _unreachable(address, e)}
    try:
        info = client.hello()
    except ServerUnreachable as e:
        return {"status": "error", "message": _unreachable(address, e)}
    except Exception as e:
        return {"status": "error", "message": f"the mattebridge server at {address}: {_first_line(e)}"}
    finally:
        client.close()
    return {"status": "ok", "message": f"mattebridge server at {address} is up", "server": info}


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def _unreachable(address: str, e: BaseException) -> str:
    return (
        f"the mattebridge server at {address} is not running or not answering "
        f"(start it with `mattebridge serve`): {_first_line(e)}"
    )


def build_window(args):
    """The window for these arguments (the QApplication must exist). Raises MatteBridgeError."""
    from .document import PromptDocument
    from .plates import PlateSource
    from .window import PickerWindow

    options, doc = options_from_args(args)
    source = PlateSource(
        options.plate,
        options.frames,
        options.layer,
        options.colorspace,
        options.ocio,
        options.view,
        preview_size=options.preview_size,
    )
    source.geometry(options.frame)  # the plate and its colour are checked before a window opens
    source.transform
    doc = doc or PromptDocument()
    if not doc.objects:
        doc = PromptDocument(doc.prompts(), [doc.new_object_name()])
    return PickerWindow(options, source, doc)


def run_app(args) -> int:
    print_result = getattr(args, "print_result", False)
    try:
        if args.check:
            result = check_server(args.server, args.timeout)
            code = EXIT_DONE if result["status"] == "ok" else EXIT_SERVER
            print(
                ("mattebridge: " if code == EXIT_DONE else "mattebridge: error: ") + result["message"], file=sys.stderr
            )
            if print_result:
                emit_result(result)
            return code
        try:
            from PySide6.QtCore import QTimer
            from PySide6.QtWidgets import QApplication
        except ImportError:
            raise MatteBridgeError("the prompt window needs PySide6: pip install 'mattebridge[picker]'") from None
        app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "mattebridge"])
        app.setApplicationName("MatteBridge")
        window = build_window(args)
    except MatteBridgeError as e:
        if not print_result:
            raise
        print(f"mattebridge: error: {e}", file=sys.stderr)
        emit_result({"status": "error", "message": str(e), "plate": args.plate, "mattes": {}})
        return EXIT_USAGE
    window.show()
    window.raise_()
    window.activateWindow()
    previous = signal.signal(signal.SIGINT, lambda *_: window.close())
    ticker = QTimer()  # lets Python see Ctrl+C while Qt's event loop runs
    ticker.start(250)
    ticker.timeout.connect(lambda: None)
    try:
        app.exec()
    finally:
        signal.signal(signal.SIGINT, previous)
        ticker.stop()
    result = dict(window.result)
    code = window.exit_code if result["status"] != "closed" else EXIT_CLOSED
    result["exit_code"] = code
    if result["status"] == "error":
        print(f"mattebridge: error: {result['message']}", file=sys.stderr)
    if print_result:
        emit_result(result)
    return code
