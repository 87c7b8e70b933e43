"""A show as an Open Job Description job bundle (template.yaml + parameter_values.yaml, as AWS Deadline Cloud's
`deadline bundle submit` reads it; `openjd run` runs the template locally).

The job (specification jobtemplate-2023-09):
- step `Track`: one task per shot (tracking within a shot is sequential: each frame's memory feeds the next),
  or per shot and object with `chunk_objects`. The shots are task parameters combined associatively, so every
  path is a PATH task parameter and gets the farm's path mapping. Each task runs `mattebridge farm --task`,
  which checks the pinned checkpoint and runs `mattebridge track --report` in the same process.
- step `ShowReport`, after every Track task: gathers their QC reports into show_report.csv/json.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional

from mattebridge.core.errors import MatteBridgeError
from mattebridge.core.farm.shots import Shot, shot_objects
from mattebridge.core.farm.task import ALL_OBJECTS, ModelPin, matting_model, report_stem

SPEC = "jobtemplate-2023-09"
MAX_TASKS = 1024  # the most values an OpenJD task parameter may take
# GPU memory a task reserves (MiB), by sam2 config: weights, a 1024 px frame's features and the bounded memory
# bank, with headroom. Estimates, not measurements: `--gpu-memory` overrides them.
GPU_MEMORY_MIB = {"sam2.1_hiera_t": 4096, "sam2.1_hiera_s": 4096, "sam2.1_hiera_b+": 6144, "sam2.1_hiera_l": 8192}
CPU_MEMORY_MIB = 8192


@dataclass
class FarmSettings:
    pin: ModelPin
    model_cache: str  # the ModelCache job parameter's value in parameter_values.yaml
    reports: str  # ReportDir's
    python: str = sys.executable  # Python's: an interpreter with mattebridge
    cpu: bool = False
    chunk_objects: bool = False
    image_size: Optional[int] = None
    gpu_memory: Optional[int] = None  # MiB; None: by model config
    min_confidence: float = 0.5
    name: str = "mattebridge"


def tasks(shots: List[Shot], chunk_objects: bool) -> List[Dict[str, str]]:
    """The Track step's tasks: one per shot, or per shot and object."""
    out = []
    for shot in shots:
        for obj in shot_objects(shot, chunk_objects):
            out.append(
                {
                    "Shot": shot.name,
                    "Plate": shot.plate,
                    "Frames": str(shot.frames),
                    "Prompts": shot.prompts,
                    "Out": shot.out,
                    "Options": json.dumps(shot.options, sort_keys=True),
                    "Object": obj or ALL_OBJECTS,
                }
            )
    return out


def template(shots: List[Shot], s: FarmSettings) -> dict:
    todo = tasks(shots, s.chunk_objects)
    if len(todo) > MAX_TASKS:
        raise MatteBridgeError(
            f"{len(todo)} tasks: an OpenJD step holds at most {MAX_TASKS}; split the SHOTS file into several jobs"
        )
    params = ["Shot", "Plate", "Frames", "Prompts", "Out", "Options", "Object"]
    paths = {"Plate", "Prompts", "Out"}
    pin = s.pin
    task_args = ["-m", "mattebridge.cli", "farm", "--task"]
    for flag, p in (("--shot", "Shot"), ("--plate", "Plate"), ("--frames", "Frames"), ("--prompts", "Prompts")):
        task_args += [flag, "{{Task.Param.%s}}" % p]
    task_args += ["--out", "{{Task.Param.Out}}", "--options", "{{Task.Param.Options}}"]
    task_args += ["--object", "{{Task.Param.Object}}", "--reports", "{{Param.ReportDir}}"]
    task_args += ["--model-cache", "{{Param.ModelCache}}", "--model", pin.name, "--sha256", pin.sha256]
    if pin.checkpoint:
        task_args += ["--checkpoint", pin.checkpoint]
    if pin.config:
        task_args += ["--model-config", pin.config]
    if s.image_size:
        task_args += ["--image-size", str(s.image_size)]
    task_args += ["--device", "cpu" if s.cpu else "cuda"]
    if s.cpu:
        amounts = [{"name": "amount.worker.memory", "min": CPU_MEMORY_MIB}]
    else:
        config = pin.config or ""
        amounts = [
            {"name": "amount.worker.gpu", "min": 1},
            {"name": "amount.worker.gpu.memory", "min": s.gpu_memory or GPU_MEMORY_MIB.get(config, 8192)},
        ]
    reports = [{"shot": t["Shot"], "report": report_stem(t["Shot"], t["Object"])} for t in todo]
    model_file = pin.filename
    return {
        "specificationVersion": SPEC,
        "name": s.name[:128],
        "description": f"mattebridge: {len({t['Shot'] for t in todo})} shot(s) tracked with {pin.name} "
        f"(SHA-256 {pin.sha256}), then one show report.",
        # PATH parameters carry no default: OpenJD tools join a default to the template's folder (relative only);
        # the values are in parameter_values.yaml, as Deadline Cloud bundles keep them.
        "parameterDefinitions": [
            {
                "name": "ModelCache",
                "type": "PATH",
                "objectType": "DIRECTORY",
                "dataFlow": "NONE",  # on every node already: never uploaded as a job attachment
                "description": f"Folder on the farm nodes holding {model_file} (SHA-256 {pin.sha256}); "
                "nodes do not download it.",
            },
            {
                "name": "ReportDir",
                "type": "PATH",
                "objectType": "DIRECTORY",
                "dataFlow": "OUT",
                "description": "Where each shot's QC report and the show report are written.",
            },
            {
                "name": "Python",
                "type": "PATH",
                "objectType": "FILE",
                "dataFlow": "NONE",
                "description": "The Python of the mattebridge install on the farm nodes.",
            },
            {
                "name": "MinConfidence",
                "type": "FLOAT",
                "description": "Frames whose predicted IoU is below this are listed in the show report.",
                "default": s.min_confidence,
                "minValue": 0,
                "maxValue": 1,
            },
        ],
        "steps": [
            {
                "name": "Track",
                "description": "One task per shot (or shot and object): mattebridge track with --report; "
                "a retried task skips the frames already written by this job.",
                "parameterSpace": {
                    "taskParameterDefinitions": [
                        {"name": p, "type": "PATH" if p in paths else "STRING", "range": [t[p] for t in todo]}
                        for p in params
                    ],
                    "combination": "(" + ", ".join(params) + ")",
                },
                "hostRequirements": {"amounts": amounts},
                "script": {
                    "actions": {
                        "onRun": {
                            "command": "{{Param.Python}}",
                            "args": task_args,
                            # SIGTERM first: track stops between frames and leaves only complete files
                            "cancelation": {"mode": "NOTIFY_THEN_TERMINATE", "notifyPeriodInSeconds": 30},
                        }
                    }
                },
            },
            {
                "name": "ShowReport",
                "description": "Every shot's QC report in one table, worst first: show_report.csv and .json.",
                "dependencies": [{"dependsOn": "Track"}],
                "script": {
                    "embeddedFiles": [
                        {"name": "Reports", "type": "TEXT", "filename": "reports.json", "data": json.dumps(reports)}
                    ],
                    "actions": {
                        "onRun": {
                            "command": "{{Param.Python}}",
                            "args": [
                                "-m",
                                "mattebridge.cli",
                                "farm",
                                "--gather",
                                "{{Task.File.Reports}}",
                                "--reports",
                                "{{Param.ReportDir}}",
                                "--min-confidence",
                                "{{Param.MinConfidence}}",
                            ],
                        }
                    },
                },
            },
        ],
    }


def parameter_values(s: FarmSettings) -> dict:
    """parameter_values.yaml as Deadline Cloud's job bundles hold it."""
    return {
        "parameterValues": [
            {"name": "ModelCache", "value": s.model_cache},
            {"name": "ReportDir", "value": s.reports},
            {"name": "Python", "value": s.python},
            {"name": "MinConfidence", "value": s.min_confidence},
        ]
    }


def check_matting_models(shots: List[Shot], cache: str) -> None:
    """Every `edge: matte` shot's matting model is in the model cache: nodes do not download, so a missing one
    is refused here, naming the row, rather than failing each task on the farm. A cache this machine does not see
    (a path only the nodes mount) cannot be checked here; its tasks then say what is missing."""
    from mattebridge.core.engine import catalog

    if not os.path.isdir(cache):
        return
    for shot in shots:
        name = matting_model(shot.options)
        if name and not os.path.isfile(os.path.join(cache, catalog.entry(name).name, catalog.MANIFEST)):
            raise MatteBridgeError(
                f"{shot.shots_file}: row {shot.row} ({shot.name}), field edge: matte needs the matting model {name}, "
                f"not in the model cache {cache}: run `MATTEBRIDGE_MODELS={shlex.quote(cache)} mattebridge models "
                f"download {name}`"
            )


def write_bundle(folder: str, shots: List[Shot], s: FarmSettings) -> List[str]:
    """template.yaml and parameter_values.yaml in `folder` (made if needed); returns their paths."""
    import yaml  # the `farm` extra; OpenJD's own tools read the bundle with it too

    check_matting_models(shots, s.model_cache)
    doc = template(shots, s)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise MatteBridgeError(f"{folder}: cannot make the bundle folder ({e.strerror or e})") from None
    written = []
    for name, content in (("template.yaml", doc), ("parameter_values.yaml", parameter_values(s))):
        path = os.path.join(folder, name)
        text = yaml.safe_dump(content, sort_keys=False, allow_unicode=True, width=120)
        tmp = path + ".tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, path)
        except OSError as e:
            raise MatteBridgeError(f"{path}: cannot write ({e.strerror or e})") from None
        written.append(path)
    return written
