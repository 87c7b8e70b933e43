"""One task of a farm job: check the pinned checkpoint, then the `mattebridge track` command line of one shot
(or one object of it). Farm nodes have no internet: a missing or different checkpoint fails the task in one
line instead of a download or a silent change of model. A retried task runs the same command, so track skips
the frames the killed attempt finished (their EXR headers carry the job key) and finishes the shot."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from mattebridge.core.errors import MatteBridgeError
from mattebridge.core.wire.prompts import Prompts

ALL_OBJECTS = "*"  # the Object task parameter of a task that tracks every object of its shot
OPTION_FLAGS = {
    "layer": "--layer",
    "colorspace": "--colorspace",
    "view": "--view",
    "edge": "--edge",
    "layout": "--layout",
}


@dataclass
class ModelPin:
    """The model a job was written for: a published name (looked up as NAME.pt in the cache) or a checkpoint
    file name with its sam2 config; either way its SHA-256."""

    name: str  # published model name (what the matte headers record)
    sha256: str
    checkpoint: Optional[str] = None  # file name inside the model cache
    config: Optional[str] = None

    @property
    def filename(self) -> str:
        return self.checkpoint or self.name + ".pt"


def matting_model(options: Dict[str, str]) -> Optional[str]:
    """The catalogue matting model a shot's task loads from the model cache (track's default), or None."""
    from mattebridge.core.engine.matting_model import DEFAULT_MATTE_MODEL

    return DEFAULT_MATTE_MODEL if options.get("edge") == "matte" else None


def report_stem(shot: str, obj: Optional[str]) -> str:
    """The QC report of a task, without extension: one per shot, or per shot and object."""
    return shot if obj in (None, ALL_OBJECTS) else f"{shot}.{obj}"


def verify_checkpoint(cache: str, pin: ModelPin) -> str:
    """The checkpoint's path in the cache, once its SHA-256 is the pinned one."""
    path = os.path.join(cache, pin.filename)
    if not os.path.isfile(path):
        raise MatteBridgeError(
            f"{path}: checkpoint not in the model cache (farm nodes do not download; pre-seed it, docs/farm.md)"
        )
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError as e:
        raise MatteBridgeError(f"{path}: cannot read checkpoint ({e.strerror or e})") from None
    if digest.hexdigest() != pin.sha256:
        raise MatteBridgeError(f"{path}: SHA-256 {digest.hexdigest()} is not the job's pinned {pin.sha256}")
    return path


def one_object_prompts(prompts_path: str, obj: str, dest: str) -> str:
    """A prompts file holding only `obj` (mask paths made absolute against the original file's folder)."""
    prompts = Prompts.load(prompts_path)
    if obj not in prompts.objects:
        raise MatteBridgeError(f"{prompts_path}: no object {obj!r} (the file changed since the job was written)")
    doc = prompts.to_json()
    doc["objects"] = [o for o in doc["objects"] if o["name"] == obj]
    for o in doc["objects"]:
        for fr in o["frames"]:
            if fr.get("mask") is not None:
                fr["mask"] = os.path.join(os.path.dirname(os.path.abspath(prompts_path)), fr["mask"])
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    tmp = dest + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1)
    os.replace(tmp, dest)
    return dest


def track_args(
    *,
    shot: str,
    plate: str,
    frames: str,
    prompts: str,
    out: str,
    options: str,
    obj: str,
    reports: str,
    cache: str,
    pin: ModelPin,
    device: str,
    image_size: Optional[int] = None,
) -> Tuple[List[str], Dict[str, str]]:
    """(`mattebridge track` arguments, environment) of one task, after the pinned checkpoint is checked."""
    try:
        opts: Dict[str, str] = json.loads(options)
    except ValueError:
        opts = None
    if not isinstance(opts, dict) or any(k not in OPTION_FLAGS or not isinstance(v, str) for k, v in opts.items()):
        raise MatteBridgeError(f"shot {shot}: task options {options!r} are not the ones the job was written with")
    path = verify_checkpoint(cache, pin)
    reports = os.path.abspath(reports)
    if obj != ALL_OBJECTS:
        prompts = one_object_prompts(prompts, obj, os.path.join(reports, "prompts", report_stem(shot, obj) + ".json"))
    args = ["track", plate, "--frames", frames, "--prompts", prompts, "--out", out, "--device", device]
    args += ["--report", os.path.join(reports, report_stem(shot, obj) + ".json")]
    for key, value in opts.items():
        args += [OPTION_FLAGS[key], value]
    if pin.checkpoint:
        args += ["--checkpoint", path, "--model-config", pin.config]
    else:
        args += ["--model", pin.name]
        if pin.config:
            args += ["--model-config", pin.config]
    if image_size:
        args += ["--image-size", str(image_size)]
    # Catalogue models (a published tracker by name, `edge: matte`'s matting model) are found in the job's cache,
    # whatever the pin: the node's own ~/.cache is not what the bundle was checked against.
    return args, {"MATTEBRIDGE_MODELS": os.path.abspath(cache)}
