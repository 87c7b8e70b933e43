"""`mattebridge farm`: SHOTS files checked row by row, OpenJD bundles checked by OpenJD's own tools (`openjd
check`, openjd-model) and run end to end with `openjd run` (random-weight tiny model at 256 px, CPU)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import TEST_SIZE, read_exr, run_cli

OPENJD = str(Path(sys.executable).parent / "openjd")
HERO = {"name": "hero", "frames": [{"frame": 1001, "points": [{"x": 480, "y": 270}]}]}
BED = {"name": "bed", "frames": [{"frame": 1001, "box": [100, 300, 700, 540]}]}
LAMP = {"name": "lamp", "frames": [{"frame": 1005, "points": [{"x": 200, "y": 100}]}]}


def write_prompts(path, *objects):
    path.write_text(json.dumps({"version": 1, "objects": list(objects)}))
    return path.name


@pytest.fixture
def show(tmp_path, bedroom_plate):
    """A show folder: the plate linked in, two prompts files, SHOTS with relative paths."""
    os.symlink(os.path.dirname(bedroom_plate), tmp_path / "plate")
    write_prompts(tmp_path / "sh010.json", HERO, BED)
    write_prompts(tmp_path / "sh020.json", LAMP)
    return tmp_path


def shots_csv(folder, rows, header="shot,plate,frames,prompts,out,edge"):
    path = folder / "shots.csv"
    path.write_text(header + "\n" + "".join(r + "\n" for r in rows))
    return path


TWO_SHOTS = [
    "sh010,plate/plate.####.exr,1001-1003,sh010.json,mattes/sh010/{object}.####.exr,",
    "sh020,plate/plate.####.exr,1005-1007,sh020.json,mattes/sh020/lamp.####.exr,raw",
]


def farm(shots, bundle, checkpoint, *extra):
    return run_cli(
        "farm",
        shots,
        "--bundle",
        bundle,
        "--checkpoint",
        checkpoint,
        "--model-config",
        "sam2.1_hiera_t",
        "--image-size",
        TEST_SIZE,
        "--cpu",
        *extra,
    )


def job_params(bundle):
    """parameter_values.yaml (Deadline Cloud's form) as `openjd run -p` arguments."""
    values = yaml.safe_load((bundle / "parameter_values.yaml").read_text())["parameterValues"]
    return [a for v in values for a in ("-p", f"{v['name']}={v['value']}")]


def openjd_run(bundle, *extra, **kw):
    return subprocess.run(
        [OPENJD, "run", str(bundle / "template.yaml"), *job_params(bundle), *extra],
        capture_output=True,
        text=True,
        timeout=900,
        **kw,
    )


def openjd_tasks(bundle):
    """step name -> its tasks, as openjd-model (not our code) expands the template."""
    from openjd.model import (
        ParameterValue,
        ParameterValueType,
        StepParameterSpaceIterator,
        create_job,
        decode_job_template,
    )

    types = {"ModelCache": "PATH", "ReportDir": "PATH", "Python": "PATH", "MinConfidence": "FLOAT"}
    values = yaml.safe_load((bundle / "parameter_values.yaml").read_text())["parameterValues"]
    job = create_job(
        job_template=decode_job_template(template=yaml.safe_load((bundle / "template.yaml").read_text())),
        job_parameter_values={
            v["name"]: ParameterValue(type=ParameterValueType(types[v["name"]]), value=str(v["value"])) for v in values
        },
    )
    return {
        s.name: [{k: v.value for k, v in t.items()} for t in StepParameterSpaceIterator(space=s.parameterSpace)]
        if s.parameterSpace
        else [{}]
        for s in job.steps
    }, job


# --- bundles, checked by OpenJD's tools ------------------------------------------------------------
def test_bundle_passes_openjd_check_per_shot_and_per_object(show, checkpoint):
    shots = shots_csv(show, TWO_SHOTS)
    for extra, expected in (
        ((), [("sh010", "*"), ("sh020", "*")]),
        (("--chunk-objects",), [("sh010", "hero"), ("sh010", "bed"), ("sh020", "*")]),
    ):
        bundle = show / ("bundle" + "".join(extra))
        rc, _, err = farm(shots, bundle, checkpoint, *extra)
        assert rc == 0, err
        check = subprocess.run([OPENJD, "check", str(bundle / "template.yaml")], capture_output=True, text=True)
        assert check.returncode == 0 and "passes validation" in check.stdout, check.stdout + check.stderr
        summary = subprocess.run(
            [OPENJD, "summary", str(bundle / "template.yaml"), *job_params(bundle)], capture_output=True, text=True
        )
        assert summary.returncode == 0 and "ERROR" not in summary.stdout, summary.stdout + summary.stderr
        tasks, job = openjd_tasks(bundle)
        assert [(t["Shot"], t["Object"]) for t in tasks["Track"]] == expected
        assert tasks["Track"][0]["Plate"] == str(show / "plate" / "plate.####.exr")  # resolved against SHOTS
        assert tasks["Track"][1 + bool(extra)]["Options"] == '{"edge": "raw"}'
        assert [d.dependsOn for d in job.steps[1].dependencies] == ["Track"]


def test_gpu_bundle_pins_the_published_model_and_asks_for_a_gpu(show, tmp_path):
    from mattebridge.core.engine.models import MODELS

    rc, _, err = run_cli(
        "farm",
        shots_csv(show, TWO_SHOTS),
        "--bundle",
        tmp_path / "b",
        "--model",
        "sam2.1_hiera_large",
        "--model-cache",
        "/farm/models",
    )
    assert rc == 0, err
    check = subprocess.run([OPENJD, "check", str(tmp_path / "b" / "template.yaml")], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    _, job = openjd_tasks(tmp_path / "b")
    amounts = {a.name: a.min for a in job.steps[0].hostRequirements.amounts}
    assert amounts["amount.worker.gpu"] == 1 and amounts["amount.worker.gpu.memory"] >= 8192
    args = job.steps[0].script.actions.onRun.args
    assert args[args.index("--sha256") + 1] == MODELS["sam2.1_hiera_large"].sha256
    assert args[args.index("--device") + 1] == "cuda"
    assert job.parameters["ModelCache"].value == "/farm/models"


# --- whole jobs under `openjd run` --------------------------------------------------------------------
def test_openjd_run_tracks_two_shots_three_objects_and_writes_the_show_report(show, checkpoint):
    bundle = show / "bundle"
    rc, _, err = farm(shots_csv(show, TWO_SHOTS), bundle, checkpoint, "--reports", show / "qc")
    assert rc == 0, err
    run = openjd_run(bundle)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for obj, frames in (
        ("sh010/hero", (1001, 1002, 1003)),
        ("sh010/bed", (1001, 1002, 1003)),
        ("sh020/lamp", (1005, 1006, 1007)),
    ):
        for f in frames:
            assert (show / "mattes" / f"{obj}.{f}.exr").is_file()
    report = json.loads((show / "qc" / "show_report.json").read_text())
    assert sorted((r["shot"], r["object"], r["frames"]) for r in report["rows"]) == [
        ("sh010", "bed", 3),
        ("sh010", "hero", 3),
        ("sh020", "lamp", 3),
    ]
    lines = (show / "qc" / "show_report.csv").read_text().splitlines()
    assert lines[0].startswith("shot,object,frames,lost,low_confidence") and len(lines) == 4


def descendants(pid):
    """Every process below `pid` (from /proc), children first found first."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def test_a_task_killed_mid_shot_resumes_when_rerun(show, checkpoint):
    shots = shots_csv(show, ["sh030,plate/plate.####.exr,1001-1008,sh030.json,mattes/sh030.####.exr,"])
    write_prompts(show / "sh030.json", HERO)
    bundle = show / "bundle"
    assert farm(shots, bundle, checkpoint)[0] == 0
    cmd = [OPENJD, "run", str(bundle / "template.yaml"), *job_params(bundle), "--step", "Track"]
    log = open(show / "first.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    mattes = [show / "mattes" / f"sh030.{f}.exr" for f in range(1001, 1009)]
    deadline = time.monotonic() + 600
    while sum(m.exists() for m in mattes) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in descendants(proc.pid) + [proc.pid]:  # the node dies: nothing gets to clean up
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(30)
    log.close()
    done = [m for m in mattes if m.exists()]
    assert 2 <= len(done) < len(mattes), (show / "first.log").read_text()[-2000:]
    before = {m: m.stat().st_mtime_ns for m in done}
    run = openjd_run(bundle, "--step", "Track")
    assert run.returncode == 0, run.stdout[-3000:]
    assert f"({len(done)} already done)" in run.stdout
    assert all(m.exists() for m in mattes)
    assert {m: m.stat().st_mtime_ns for m in done} == before  # finished, not started over


def test_a_task_fails_in_one_line_when_the_checkpoint_is_absent_or_different(show, checkpoint, tmp_path):
    shots = shots_csv(show, TWO_SHOTS[1:])
    bundle = show / "bundle"
    assert farm(shots, bundle, checkpoint)[0] == 0
    empty = tmp_path / "empty-cache"
    empty.mkdir()
    run = openjd_run(bundle, "--step", "Track", "-p", f"ModelCache={empty}")
    assert run.returncode != 0
    output = [ln.split("\t", 1)[-1] for ln in run.stdout.splitlines()]
    failure = output[[i for i, ln in enumerate(output) if ln.startswith("Process pid")][-1] - 1]
    assert failure.startswith("mattebridge: error: ") and "not in the model cache" in failure
    other = tmp_path / "other-cache"
    other.mkdir()
    shutil.copy(checkpoint, other / os.path.basename(checkpoint))
    with open(other / os.path.basename(checkpoint), "ab") as f:
        f.write(b"\0")
    run = openjd_run(bundle, "--step", "Track", "-p", f"ModelCache={other}")
    assert run.returncode != 0 and "is not the job's pinned" in run.stdout
    assert not (show / "mattes").exists()


def node_env(tmp_path):
    """A farm node's environment: its own empty home cache, no cache chosen by the environment."""
    home = tmp_path / "node-home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("MATTEBRIDGE_MODELS", "XDG_CACHE_HOME")}
    return dict(env, HOME=str(home))


MATTE_SHOT = ["sh040,plate/plate.####.exr,1001-1002,sh040.json,mattes/sh040.####.exr,matte"]


def test_an_edge_matte_shot_pinned_by_checkpoint_finds_the_matting_model_in_the_job_cache(
    show, checkpoint, tiny_vitmatte, tmp_path
):
    from mattebridge.core.engine import catalog
    from mattebridge.core.engine.matting_model import DEFAULT_MATTE_MODEL

    cache = tmp_path / "farm-models"
    cache.mkdir()
    shutil.copy(checkpoint, cache / os.path.basename(checkpoint))
    shutil.copytree(tiny_vitmatte, cache / DEFAULT_MATTE_MODEL)
    catalog.write_manifest(str(cache / DEFAULT_MATTE_MODEL), catalog.entry(DEFAULT_MATTE_MODEL).repo, "0" * 40)
    write_prompts(show / "sh040.json", HERO)
    bundle = show / "bundle"
    rc, _, err = farm(shots_csv(show, MATTE_SHOT), bundle, checkpoint, "--model-cache", cache)
    assert rc == 0, err
    run = openjd_run(bundle, "--step", "Track", env=node_env(tmp_path))  # the node's ~/.cache has no ViTMatte
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for f in (1001, 1002):
        meta = {a.name: a.value for a in read_exr(show / "mattes" / f"sh040.{f}.exr")[1].extra_attribs}
        assert meta["mattebridge/edge"] == "matte" and meta["mattebridge/matteModel"] == DEFAULT_MATTE_MODEL


def test_a_bundle_with_an_edge_matte_shot_needs_the_matting_model_in_the_cache(show, checkpoint, tmp_path):
    cache = tmp_path / "farm-models"
    cache.mkdir()
    shutil.copy(checkpoint, cache / os.path.basename(checkpoint))  # the tracker is there; ViTMatte is not
    write_prompts(show / "sh040.json", HERO)
    shots = shots_csv(show, TWO_SHOTS[1:] + MATTE_SHOT)
    rc, out, err = farm(shots, show / "bundle", checkpoint, "--model-cache", cache)
    assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"mattebridge: error: {shots}: row 3 (sh040), field edge: "), err
    assert "vitmatte-small-composition-1k" in err and "mattebridge models download" in err, err
    assert not (show / "bundle").exists()
    rc, _, err = farm(shots, show / "bundle", checkpoint, "--model-cache", "/only/on/the/nodes")
    assert rc == 0 and (show / "bundle" / "template.yaml").exists(), err  # a cache not seen here: the tasks check


# --- SHOTS files: one line naming the row and the field ----------------------------------------------
def row(shot="sh010", plate="plate/plate.####.exr", frames="1001-1003", prompts="sh010.json", out=None, edge=""):
    return ",".join([shot, plate, frames, prompts, out or f"m/{shot}/{{object}}.####.exr", edge])


@pytest.mark.parametrize(
    "rows, header, expected",
    [
        ([row(plate="plate/missing.####.exr")], None, "row 2 (sh010), field plate"),
        ([row(frames="1003-1001")], None, "row 2 (sh010), field frames"),
        ([row(frames="10x")], None, "row 2 (sh010), field frames"),
        ([row(), row(prompts="sh020.json")], None, "row 3 (sh010), field shot: duplicate of row 2"),
        ([row(prompts="bad.json")], None, "row 2 (sh010), field prompts"),
        ([row(edge="x")], "shot,plate,frames,prompts,out,colour", "row 1, field 'colour': unknown field"),
        ([row(out="m/hero.####.exr")], None, "row 2 (sh010), field out"),
        ([row(edge="glow")], None, "row 2 (sh010), field edge"),
        ([row(), row(shot="sh011", out="m/sh010/{object}.####.exr")], None, "row 3 (sh011), field out"),
    ],
)
def test_bad_shots_files_are_one_line_naming_row_and_field(show, checkpoint, rows, header, expected):
    (show / "bad.json").write_text('{"version": 1, "objects": [')
    shots = shots_csv(show, rows, header or "shot,plate,frames,prompts,out,edge")
    rc, out, err = farm(shots, show / "bundle", checkpoint)
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"mattebridge: error: {shots}: {expected}"), err
    assert not (show / "bundle").exists()


def test_json_shots_are_checked_the_same_way(show, checkpoint):
    entries = [
        {
            "shot": "sh010",
            "plate": "plate/plate.####.exr",
            "frames": "1001-1003",
            "prompts": "sh010.json",
            "out": "m/{object}.####.exr",
        },
        {"shot": "sh020", "plate": "plate/plate.####.exr", "frames": "1005", "prompts": "nope.json", "out": "n.exr"},
    ]
    (show / "shots.json").write_text(json.dumps(entries))
    rc, _, err = farm(show / "shots.json", show / "bundle", checkpoint)
    assert (
        rc == 2
        and err.strip()
        == f"mattebridge: error: {show / 'shots.json'}: row 2 (sh020), field prompts: "
        f"{show / 'nope.json'}: no such file"
    )
    entries[1]["prompts"] = "sh020.json"
    entries[1]["frames"] = 1005
    (show / "shots.json").write_text(json.dumps(entries))
    assert farm(show / "shots.json", show / "bundle", checkpoint)[0] == 0


# --- the show report ------------------------------------------------------------------------------
def test_show_report_lists_lost_and_low_confidence_frames_worst_first(tmp_path):
    from mattebridge.core.farm.report import gather

    def rec(frame, obj, iou, present=True, flags=()):
        return {"frame": frame, "object": obj, "score": 1.0, "iou": iou, "present": present, "flags": list(flags)}

    (tmp_path / "a.json").write_text(
        json.dumps(
            {
                "records": [
                    rec(1, "hero", 0.9),
                    rec(2, "hero", 0.3),
                    rec(3, "hero", 0.1, False, ["vanished"]),
                    rec(4, "hero", 0.2),
                    rec(1, "prop", 0.95),
                    rec(2, "prop", None),
                ]
            }
        )
    )
    (tmp_path / "b.json").write_text(json.dumps({"records": [rec(7, "car", 0.4), rec(8, "car", 0.8)]}))
    gather(str(tmp_path), [{"shot": "a", "report": "a"}, {"shot": "b", "report": "b"}], 0.5)
    rows = json.loads((tmp_path / "show_report.json").read_text())["rows"]
    assert [(r["shot"], r["object"]) for r in rows] == [("a", "hero"), ("b", "car"), ("a", "prop")]
    assert rows[0]["lost_frames"] == [3] and rows[0]["low_confidence_frames"] == [2, 3, 4]
    assert [w["frame"] for w in rows[0]["worst_frames"]] == [3, 4, 2]
    assert (tmp_path / "show_report.csv").read_text().splitlines()[1] == "a,hero,4,1,3,0.1000,0.3750,3 4 2"
    with pytest.raises(Exception, match="QC report of shot c missing"):
        gather(str(tmp_path), [{"shot": "c", "report": "c"}], 0.5)


def test_more_tasks_than_openjd_allows_is_one_line(show):
    from mattebridge.core.errors import MatteBridgeError
    from mattebridge.core.farm.bundle import FarmSettings, template
    from mattebridge.core.farm.shots import load_shots
    from mattebridge.core.farm.task import ModelPin

    base = load_shots(str(shots_csv(show, TWO_SHOTS[1:])))[0]
    shots = [base] * 1025
    with pytest.raises(MatteBridgeError, match="1025 tasks: an OpenJD step holds at most 1024"):
        template(shots, FarmSettings(ModelPin("m", "0" * 64), "/c", "/r"))
