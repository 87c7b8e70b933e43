"""Where a job writes: every output file, resolved and checked, never onto an input."""

from __future__ import annotations

import os
from typing import Dict, List

from mattebridge.core.paths import UNCONFINED, InputSet, OutputConflict, PathPolicy
from mattebridge.core.track.clip import PreparedClip
from mattebridge.core.track.job import TrackJob
from mattebridge.core.wire.sequence import frame_path


def out_path(pattern: str, frame: int, obj: str) -> str:
    return frame_path(pattern.replace("{object}", obj), frame)


def matte_paths(job: "TrackJob", frame: int) -> Dict[str, str]:
    """object (or "*" for one file holding every object) -> the matte file of `frame`."""
    if job.layout == "files":
        return {obj: out_path(job.out, frame, obj) for obj in job.prompts.objects}
    return {"*": frame_path(job.out, frame)}


def report_paths(job: "TrackJob") -> List[str]:
    stem = os.path.splitext(job.report)[0]
    return [stem + ".json", stem + ".csv"]


def job_outputs(job: "TrackJob"):
    """(field, path) of every file the job writes."""
    for frame in job.frames:
        if job.out:
            for path in matte_paths(job, frame).values():
                yield "out", path
        if job.cutout:
            yield "cutout", frame_path(job.cutout, frame)
        if job.foreground:
            yield "foreground", frame_path(job.foreground, frame)
    for path in report_paths(job) if job.report else ():
        yield "report", path


def check_outputs(job: "TrackJob", clip: "PreparedClip", paths: PathPolicy = UNCONFINED) -> InputSet:
    """Every file the job will write, resolved: allowed by `paths`, never one of the job's inputs (by path or
    inode: a hard link or a symlinked folder is the same file), never written twice. Returns the inputs."""
    inputs = InputSet()
    for path in clip.inputs:
        inputs.add(path, "a plate frame")
    for obj, per in job.prompts.objects.items():
        for frame, fp in per.items():
            if fp.mask:
                inputs.add(fp.mask, f"the mask of {obj!r} on frame {frame}")
    config = clip.transform.config_source
    if config and not config.startswith("ocio://"):
        inputs.add(config, "the OCIO config")
    if job.prompts_file:
        inputs.add(job.prompts_file, "the prompts file")
    written: Dict[str, str] = {}
    for field, path in job_outputs(job):
        real = paths.write(path, field)
        inputs.refuse_overwrite(real, field, path)
        if written.setdefault(real, field) != field:
            raise OutputConflict(field, f" {path}: is also written by {written[real]}")
    return inputs


def remove_stale_temps(paths: List[str]) -> None:
    """Temp files a killed writer left next to `paths` (write_matte's naming); never a finished file.
    Each folder is listed once, however many outputs it holds."""
    names_by_folder: Dict[str, set] = {}
    for path in paths:
        folder, name = os.path.split(os.path.abspath(path))
        names_by_folder.setdefault(folder, set()).add(name)
    for folder, names in names_by_folder.items():
        if not os.path.isdir(folder):
            continue
        for entry in os.listdir(folder):
            if entry.startswith(".") and entry.endswith(".tmp.exr") and entry[1:].rsplit(".", 3)[0] in names:
                try:
                    os.unlink(os.path.join(folder, entry))
                except OSError:
                    pass


class OutputFiles:
    """Where outputs really go: each path resolved and checked when it is opened (a folder can become a
    symlink mid-shot), never onto one of the job's inputs."""

    def __init__(self, paths: PathPolicy, inputs: InputSet):
        self.paths, self.inputs = paths, inputs

    def path(self, path: str, field: str) -> str:
        real = self.paths.write(path, field)
        self.inputs.refuse_overwrite(real, field, path)
        return real
