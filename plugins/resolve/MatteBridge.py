"""MatteBridge for DaVinci Resolve (Workspace > Scripts > MatteBridge).

Park the playhead on a clip and run it: the prompt window (`mattebridge pick`) opens on that clip's
source frame; click and track there; the mattes (EXR, the matte in R, G, B and A, numbered like the
source frames) are attached to the clip as clip mattes. In the Color page: right-click a node > Add Matte,
and use its key output as a qualifier. Running it again on the clip replaces the mattes it attached.

This file is self-contained on purpose: Resolve's Python (any 3.9+) does not have mattebridge installed.
It only talks to Resolve and starts `mattebridge pick` (from the mattebridge install) as a process.
Setup and settings: docs/resolve.md.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
from typing import Callable, Dict, List, Optional, Tuple

PREFIX = "MatteBridge: "
# Says what the scripting README documents, nothing about editions (its APIs "cover a common superset of
# functions for both the Free and Studio versions"; which edition runs which scripts is not stated there).
NO_API = (
    "cannot reach DaVinci Resolve's scripting API: run MatteBridge from Workspace > Scripts inside DaVinci "
    "Resolve (19.0.2 or later); run from outside Resolve, it also needs Preferences > System > General > "
    "External scripting using: Local, and RESOLVE_SCRIPT_API / RESOLVE_SCRIPT_LIB (docs/resolve.md)"
)
# The project's one grammar for object names: a copy of mattebridge.core.wire.prompts.OBJECT_NAME (this file cannot
# import mattebridge); tests/test_nuke_names.py checks the two are identical.
OBJECT_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}")
MOVIE_EXTENSIONS = {
    ".mov",
    ".mp4",
    ".m4v",
    ".mxf",
    ".avi",
    ".mkv",
    ".webm",
    ".braw",
    ".r3d",
    ".ari",
    ".arx",
    ".crm",
    ".mts",
    ".m2ts",
    ".dng_seq",
    ".wmv",
    ".mpg",
    ".mpeg",
}
IMAGE_EXTENSIONS = {
    ".exr",
    ".sxr",
    ".mxr",
    ".dpx",
    ".cin",
    ".tif",
    ".tiff",
    ".png",
    ".jpg",
    ".jpeg",
    ".tga",
    ".bmp",
    ".hdr",
    ".webp",
    ".jp2",
    ".j2c",
    ".j2k",
}
# environment Resolve may set for its own Python and Qt, which must not leak into the mattebridge process
FOREIGN_ENV = (
    "PYTHONHOME",
    "PYTHONPATH",
    "PYTHONEXECUTABLE",
    "PYTHONSTARTUP",
    "QT_PLUGIN_PATH",
    "QT_QPA_PLATFORM_PLUGIN_PATH",
    "QML2_IMPORT_PATH",
    "QML_IMPORT_PATH",
    "LD_LIBRARY_PATH",
    "DYLD_LIBRARY_PATH",
    "DYLD_FRAMEWORK_PATH",
    "DYLD_INSERT_LIBRARIES",
)
VERSION_DIR = re.compile(r"v(\d{3,})\Z")
DEFAULTS = {
    "command": None,  # argv prefix of the prompt window, e.g. ["/opt/mattebridge/.venv/bin/mattebridge", "pick"]
    "server": "tcp://127.0.0.1:5557",  # mattebridge.core.wire.vocabulary.DEFAULT_ADDRESS (a test compares them)
    "matte_dir": None,  # None: a "mattebridge" folder next to the media
    "ocio": None,
    "view": None,
    "colorspace": None,
    "layer": None,
    "range": "clip",  # clip: every frame of the clip; item: the frames the timeline uses (+ handles)
    "handles": 0,
    "auto": False,  # re-track with the clip's saved prompts without clicking (the window shows progress)
    "keep_versions": 2,  # matte versions kept on disk per clip (the attached one and the one before)
    "timeout": 5.0,  # seconds the server gets to answer the check before it counts as down
}


class ScriptError(Exception):
    """A one-line reason to stop, printed as `MatteBridge: <reason>`."""


# --- settings ---------------------------------------------------------------------------------------------
def config_path(environ) -> str:
    if environ.get("MATTEBRIDGE_RESOLVE_CONFIG"):
        return environ["MATTEBRIDGE_RESOLVE_CONFIG"]
    if sys.platform == "win32":
        base = environ.get("APPDATA") or os.path.expanduser("~")
    elif sys.platform == "darwin":
        base = os.path.expanduser("~/Library/Application Support")
    else:
        base = environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return os.path.join(base, "mattebridge", "resolve.json")


def load_config(environ) -> dict:
    """DEFAULTS, then the JSON settings file, then environment variables."""
    config = dict(DEFAULTS)
    path = config_path(environ)
    config["config_path"] = path
    if os.path.exists(path):
        try:
            with open(path, encoding="utf-8") as f:
                found = json.load(f)
        except (OSError, ValueError) as e:
            raise ScriptError(f"settings file {path}: cannot read it ({e})") from None
        if not isinstance(found, dict):
            raise ScriptError(f"settings file {path}: expected a JSON object")
        unknown = sorted(set(found) - set(DEFAULTS))
        if unknown:
            raise ScriptError(
                f"settings file {path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(DEFAULTS))}"
            )
        config.update(found)
    for var, key in (("MATTEBRIDGE_SERVER", "server"), ("MATTEBRIDGE_MATTE_DIR", "matte_dir")):
        if environ.get(var):
            config[key] = environ[var]
    if environ.get("MATTEBRIDGE_EXE"):
        config["command"] = [environ["MATTEBRIDGE_EXE"], "pick"]
    if config["range"] not in ("clip", "item"):
        raise ScriptError(f"settings file {path}: range {config['range']!r} (expected clip or item)")
    return config


def pick_command(config, which=shutil.which) -> List[str]:
    command = config.get("command")
    if isinstance(command, str) and command:
        return [command, "pick"]
    if isinstance(command, list) and command and all(isinstance(c, str) for c in command):
        return list(command)
    found = which("mattebridge")
    if found:
        return [found, "pick"]
    raise ScriptError(
        'cannot find the `mattebridge` command: set MATTEBRIDGE_EXE to it, or "command" in '
        f"{config['config_path']} (see docs/resolve.md)"
    )


# --- Resolve -------------------------------------------------------------------------------------------------
def find_resolve():
    """The `resolve` object: given to scripts run from the Workspace menu, else through DaVinciResolveScript."""
    main_globals = getattr(sys.modules.get("__main__"), "__dict__", {})
    for space in (globals(), main_globals, vars(builtins)):
        if space.get("resolve") is not None:
            return space["resolve"]
    for space in (globals(), main_globals, vars(builtins)):
        bmd = space.get("bmd")
        if bmd is not None:
            try:
                found = bmd.scriptapp("Resolve")
            except Exception:
                found = None
            if found is not None:
                return found
    api = os.environ.get("RESOLVE_SCRIPT_API")
    if api and os.path.join(api, "Modules") not in sys.path:
        sys.path.append(os.path.join(api, "Modules"))
    try:
        import DaVinciResolveScript  # noqa: F401 (Resolve's own module)
    except Exception:
        return None
    try:
        return DaVinciResolveScript.scriptapp("Resolve")
    except Exception:
        return None


class ClipSource:
    """A clip's media: `file_path` as Resolve says it (/shots/plate.[1001-1100].exr or a single file), the
    plate `pattern` mattebridge reads (/shots/plate.####.exr), its frames, and the digits of a frame number
    (`padding`, 0 for a single file)."""

    def __init__(self, name: str, file_path: str, pattern: str, first: int, last: int, padding: int):
        self.name, self.file_path, self.pattern = name, file_path, pattern
        self.first, self.last, self.padding = first, last, padding

    @property
    def sequence(self) -> bool:
        return self.padding > 0


_RANGE = r"-?\d+(?:--?\d+)?"
_BRACKETS = re.compile(r"\[(%s(?:,%s)*)\]" % (_RANGE, _RANGE))


def frame_ranges(text: str) -> List[Tuple[int, int]]:
    """`1001-1050,1052-1100` (what Resolve shows between the brackets) -> [(1001, 1050), (1052, 1100)]."""
    out = []
    for part in text.split(","):
        m = re.fullmatch(r"(-?\d+)(?:-(-?\d+))?", part)
        out.append((int(m.group(1)), int(m.group(2) if m.group(2) is not None else m.group(1))))
    return out


def parse_file_path(name: str, file_path: str) -> ClipSource:
    """Resolve's "File Path" -> the plate pattern and its frames. Image sequences read `name.[1001-1100].exr`,
    with gaps `name.[1001-1050,1052-1100].exr` (refused: how Resolve numbers the frames around a gap is not
    documented, so the frame under the playhead could not be found reliably)."""
    if not file_path:
        raise ScriptError(
            f"{name}: the clip under the playhead is not file-based (a generator, title, compound, "
            "Fusion or multicam clip); MatteBridge needs an image sequence or an image file"
        )
    ext = os.path.splitext(_BRACKETS.sub("", file_path))[1].lower()
    if ext in MOVIE_EXTENSIONS:
        raise ScriptError(
            f"{name}: {os.path.basename(file_path)} is a movie file; MatteBridge reads image sequences "
            "and image files (EXR, DPX, TIFF, PNG, JPEG): render the clip to an image sequence first"
        )
    if ext not in IMAGE_EXTENSIONS:
        raise ScriptError(
            f"{name}: {os.path.basename(file_path)}: not an image format MatteBridge reads (EXR, DPX, TIFF, PNG, JPEG)"
        )
    m = _BRACKETS.search(os.path.basename(file_path))
    if m is None:
        if not os.path.exists(file_path):
            raise ScriptError(f"{name}: media offline, {file_path} not found")
        return ClipSource(name, file_path, file_path, 1, 1, 0)
    ranges = frame_ranges(m.group(1))
    if len(ranges) > 1:
        holes = ", ".join(
            str(a + 1) if b - a == 2 else f"{a + 1}-{b - 1}" for (_, a), (b, _) in zip(ranges, ranges[1:])
        )
        raise ScriptError(
            f"{name}: the image sequence has gaps (frames {holes} are missing: "
            f"{os.path.basename(file_path)}); MatteBridge needs an unbroken sequence: "
            "render or copy the missing frames"
        )
    first, last = ranges[0]
    padding = len(re.match(r"-?(\d+)", m.group(1)).group(1))
    folder = os.path.dirname(file_path)
    base = os.path.basename(file_path)
    pattern = os.path.join(folder, base[: m.start()] + "#" * padding + base[m.end() :])
    probe = os.path.join(folder, base[: m.start()] + _pad(first, padding) + base[m.end() :])
    if not os.path.exists(probe):
        raise ScriptError(f"{name}: media offline, {probe} not found")
    return ClipSource(name, file_path, pattern, first, last, padding)


def _pad(frame: int, width: int) -> str:
    return ("-" if frame < 0 else "") + str(abs(frame)).zfill(width)


def timecode_frames(timecode: str, fps: float) -> int:
    """HH:MM:SS:FF (or HH:MM:SS;FF drop-frame) -> frames since 00:00:00:00."""
    parts = re.split(r"[:;.]", timecode.strip())
    if len(parts) != 4 or not all(p.isdigit() for p in parts):
        raise ScriptError(f"cannot read the playhead timecode {timecode!r}")
    hh, mm, ss, ff = (int(p) for p in parts)
    nominal = int(round(fps))
    frames = (hh * 3600 + mm * 60 + ss) * nominal + ff
    if ";" in timecode and nominal in (30, 60):  # drop-frame: 2 (4 at 60) numbers skipped each minute but every tenth
        minutes = hh * 60 + mm
        frames -= (nominal // 15) * (minutes - minutes // 10)
    return frames


class Shot:
    """The clip under the playhead: its MediaPoolItem, media, the source frame under the playhead and the
    source frames the timeline item uses."""

    def __init__(self, mpi, source: ClipSource, frame: int, used: Tuple[int, int]):
        self.mpi, self.source, self.frame, self.used = mpi, source, frame, used


def current_shot(resolve) -> Tuple[object, Shot]:
    """(project, the clip under the playhead) with one-line reasons when there is none."""
    manager = resolve.GetProjectManager()
    project = manager.GetCurrentProject() if manager else None
    if not project:
        raise ScriptError("no project is open")
    timeline = project.GetCurrentTimeline()
    if not timeline:
        raise ScriptError("no timeline is open: open one and park the playhead on a clip")
    item = timeline.GetCurrentVideoItem()
    if not item:
        raise ScriptError("no video clip under the playhead: park it on the clip to matte (Edit or Color page)")
    name = item.GetName() or "clip"
    mpi = item.GetMediaPoolItem()
    if not mpi:
        raise ScriptError(
            f"{name}: the clip under the playhead is not file-based (a generator, title, compound, "
            "Fusion or multicam clip); MatteBridge needs an image sequence or an image file"
        )
    source = parse_file_path(name, mpi.GetClipProperty("File Path") or "")
    fps = frame_rate(timeline, project)
    clip_fps = _rate(mpi.GetClipProperty("FPS")) or fps
    step = clip_fps / fps  # source frames per timeline frame (100% speed)
    playhead = timecode_frames(timeline.GetCurrentTimecode(), fps)
    start, duration = int(item.GetStart()), int(item.GetDuration())
    # the source frame at the item's first frame, in source frames (TimelineItem, 19.0.2+); GetLeftOffset counts
    # timeline frames, which differ from source frames when the clip's rate is not the timeline's
    head = int(item.GetSourceStartFrame())
    if not source.first <= head <= source.last:
        raise ScriptError(
            f"{name}: Resolve gives the clip's source start frame as {head}, outside its frames "
            f"{source.first}-{source.last}; please report this with your Resolve version"
        )
    frame = head + int(math.floor((playhead - start) * step + 1e-6))
    tail = head + max(int(round(duration * step)) - 1, 0)
    clamp = lambda f: min(max(f, source.first), source.last)  # noqa: E731
    return project, Shot(mpi, source, clamp(frame), (head, clamp(tail)))


def _rate(text) -> Optional[float]:
    """`24`, `23.976`, `29.97 DF` -> the rate; None when empty or unreadable."""
    m = re.match(r"\s*(\d+(?:\.\d+)?)", str(text or ""))
    return float(m.group(1)) if m and float(m.group(1)) > 0 else None


def frame_rate(timeline, project) -> float:
    """The timeline's frame rate; Resolve may answer "" for the timeline's own setting: then the project's."""
    for owner in (timeline, project):
        rate = _rate(owner.GetSetting("timelineFrameRate"))
        if rate:
            return rate
    raise ScriptError(
        "cannot read the timeline's frame rate (its timelineFrameRate setting and the project's are "
        "empty): check the timeline's settings, then run MatteBridge again"
    )


# --- where the mattes go ---------------------------------------------------------------------------------------
def clip_folder(source: ClipSource, config) -> str:
    stem = (
        re.sub(r"[._\- ]+$", "", os.path.splitext(os.path.basename(_BRACKETS.sub("", source.file_path)))[0]) or "clip"
    )
    if config.get("matte_dir"):
        digest = hashlib.sha1(os.path.abspath(source.pattern).encode("utf-8")).hexdigest()[:8]
        return os.path.join(os.path.abspath(config["matte_dir"]), f"{stem}_{digest}")
    return os.path.join(os.path.dirname(os.path.abspath(source.pattern)), "mattebridge", stem)


def versions(folder: str) -> List[int]:
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return sorted(
        int(m.group(1))
        for m in (VERSION_DIR.match(n) for n in names)
        if m and os.path.isdir(os.path.join(folder, m.group(0)))
    )


def out_pattern(folder: str, version: int, source: ClipSource) -> str:
    """<clip folder>/v003/<object>/<clip>_<object>.####.exr: one sequence per folder, numbered like the source."""
    stem = os.path.basename(folder)
    token = "." + "#" * source.padding if source.sequence else ""
    return os.path.join(folder, f"v{version:03d}", "{object}", f"{stem}_{{object}}{token}.exr")


def is_under(path: str, folder: str) -> bool:
    norm = os.path.normcase(os.path.abspath(_BRACKETS.sub("0", path)))
    root = os.path.normcase(os.path.abspath(folder))
    return norm.startswith(root + os.sep)


def prune_versions(folder: str, keep: int) -> List[str]:
    """Remove this script's oldest matte versions of a clip (only folders holding nothing but EXRs)."""
    removed = []
    for v in versions(folder)[: -max(int(keep), 1)]:
        path = os.path.join(folder, f"v{v:03d}")
        files = [os.path.join(r, f) for r, _, fs in os.walk(path) for f in fs]
        if all(f.lower().endswith(".exr") for f in files):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


# --- the prompt window process -------------------------------------------------------------------------------
def child_environment(environ) -> dict:
    return {k: v for k, v in environ.items() if k not in FOREIGN_ENV}


def run_json(argv: List[str], environ, runner) -> Tuple[int, Optional[dict], str]:
    """Run a `mattebridge pick` process; (exit code, its --print-result JSON, its last stderr line)."""
    extra = {"creationflags": 0x08000000} if sys.platform == "win32" else {}  # CREATE_NO_WINDOW: no console flash
    try:
        proc = runner(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_environment(environ),
            stdin=subprocess.DEVNULL,
            **extra,
        )
    except OSError as e:
        raise ScriptError(
            f'cannot run {argv[0]} ({e.strerror or e}): set MATTEBRIDGE_EXE or "command" in the '
            "settings file (see docs/resolve.md)"
        ) from None
    result = None
    for line in reversed((proc.stdout or "").strip().splitlines()):
        try:
            result = json.loads(line)
            break
        except ValueError:
            continue
    errors = [line for line in (proc.stderr or "").strip().splitlines() if line.strip()]
    return proc.returncode, result, errors[-1] if errors else ""


def picker_arguments(shot: Shot, config, folder: str, out: str, prompts: str) -> List[str]:
    source = shot.source
    first, last = (
        (source.first, source.last)
        if config["range"] == "clip"
        else (
            max(source.first, shot.used[0] - int(config["handles"])),
            min(source.last, shot.used[1] + int(config["handles"])),
        )
    )
    frame = min(max(shot.frame, first), last)
    args = [
        source.pattern,
        "--frames",
        f"{first}-{last}",
        "--frame",
        str(frame),
        "--server",
        str(config["server"]),
        "--save",
        prompts,
        "--out",
        out,
        "--channels",
        "RGBA",
        "--on-done",
        "exit",
        "--print-result",
        "--title",
        f"{source.name} (Resolve)",
    ]
    if os.path.exists(prompts):
        args += ["--prompts", prompts]
        if config.get("auto"):
            args.append("--auto-track")
    for key in ("ocio", "view", "colorspace", "layer"):
        if config.get(key):
            args += [f"--{key}", str(config[key])]
    return args


def name_problem(name) -> Optional[str]:
    if isinstance(name, str) and OBJECT_NAME.fullmatch(name):
        return None
    shown = repr(name) if not isinstance(name, str) or len(name) <= 80 else repr(name[:77] + "...")
    return f"object name {shown}: use 1-64 letters, digits, '_', '-' or '.', not starting with '.'"


def check_names(names, where: str) -> None:
    """Object names are checked before anything is sent or attached: a one-line error naming the object."""
    for name in names:
        problem = name_problem(name)
        if problem:
            raise ScriptError(f"{where}: {problem}")


def saved_names(path: str) -> List[object]:
    """The object names in a saved prompts file (none if it is missing or unreadable: the window says why)."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        return [obj.get("name") for obj in doc.get("objects", [])]
    except (OSError, ValueError, AttributeError, TypeError):
        return []


def strip_prefix(message: str) -> str:
    return re.sub(r"^mattebridge: (error: )?", "", message)


# --- the whole job -----------------------------------------------------------------------------------------------
def run(resolve, environ=None, runner: Callable = subprocess.run, log: Callable[[str], None] = print) -> int:
    environ = os.environ if environ is None else environ
    if resolve is None:
        raise ScriptError(NO_API)
    try:
        project, shot = current_shot(resolve)
    except ScriptError:
        raise
    except Exception as e:  # an API object that is there but refuses (e.g. scripting switched off mid-way)
        raise ScriptError(
            f"a call to DaVinci Resolve's scripting API failed ({type(e).__name__}: {e}). "
            f"{NO_API[0].upper()}{NO_API[1:]}"
        ) from None
    config = load_config(environ)
    command = pick_command(config)
    folder = clip_folder(shot.source, config)
    prompts = os.path.join(folder, "prompts.json")
    version = (versions(folder) or [0])[-1] + 1
    out = out_pattern(folder, version, shot.source)
    check_names(saved_names(prompts), f"{shot.source.name}: {prompts}")

    code, result, last = run_json(
        command
        + [
            shot.source.pattern,
            "--check",
            "--server",
            str(config["server"]),
            "--timeout",
            str(config["timeout"]),
            "--print-result",
        ],
        environ,
        runner,
    )
    if code != 0:
        reason = (result or {}).get("message") or strip_prefix(last) or f"exit code {code}"
        raise ScriptError(reason if code == 3 else f"the prompt window cannot start: {reason}")

    log(f"{PREFIX}{shot.source.name}: opening the prompt window on frame {shot.frame}")
    code, result, last = run_json(command + picker_arguments(shot, config, folder, out, prompts), environ, runner)
    result = result or {}
    status = result.get("status")
    if status != "done":
        if status in ("closed", "cancelled"):
            log(
                f"{PREFIX}{shot.source.name}: {'cancelled' if status == 'cancelled' else 'closed without tracking'}; "
                "the clip's mattes are unchanged"
            )
            return 1
        reason = result.get("message") or strip_prefix(last) or f"exit code {code}"
        raise ScriptError(f"{shot.source.name}: {reason}")

    mattes: Dict[str, List[str]] = {obj: paths for obj, paths in (result.get("mattes") or {}).items() if paths}
    check_names(mattes, f"{shot.source.name}: the prompt window's result")
    if not mattes:
        raise ScriptError(f"{shot.source.name}: the track wrote no matte files")
    pool, storage = project.GetMediaPool(), resolve.GetMediaStorage()
    previous = [p for p in (pool.GetClipMatteList(shot.mpi) or []) if is_under(p, folder)]
    for obj, paths in mattes.items():
        if not storage.AddClipMattesToMediaPool(shot.mpi, paths):
            raise ScriptError(
                f"{shot.source.name}: Resolve did not accept the {obj} mattes ({os.path.dirname(paths[0])}); "
                "the clip keeps its previous mattes"
            )
    if previous and not pool.DeleteClipMattes(shot.mpi, previous):
        log(
            f"{PREFIX}{shot.source.name}: Resolve did not remove the previous mattes; remove them from the clip by hand"
        )
    prune_versions(folder, config["keep_versions"])
    summary = ", ".join(f"{obj} ({len(paths)} frames)" for obj, paths in mattes.items())
    replaced = f", replacing {len(previous)} earlier" if previous else ""
    log(
        f"{PREFIX}{shot.source.name}: attached {len(mattes)} clip matte(s){replaced}: {summary} from "
        f"{os.path.dirname(out.split('{object}')[0])}. Color page: right-click a node > Add Matte"
    )
    return 0


def main(resolve=None, environ=None, runner: Callable = subprocess.run, log: Callable[[str], None] = print) -> int:
    try:
        return run(resolve if resolve is not None else find_resolve(), environ, runner, log)
    except ScriptError as e:
        log(f"{PREFIX}{e}")
        return 2


if __name__ == "__main__":
    main()
