"""`mattebridge serve --devices`: one model worker process per device behind one front (server/pool.py), tested
with `--devices cpu,cpu` on real server processes: clips spread over the workers, propagations run on both at
once and equal a one-device server's, and a worker that dies fails only its own clips and comes back."""

import os
import signal
import threading
import time

import numpy as np
import pytest
from conftest import ServerProcess, read_exr, wait_for

from mattebridge.core.wire.client import Client, ServerError

FRAMES = "1001-1012"


@pytest.fixture(scope="module")
def two_cpus(checkpoint, tmp_path_factory):
    server = ServerProcess(checkpoint, tmp_path_factory.mktemp("devices"), "--devices", "cpu,cpu")
    yield server
    server.stop()


def _parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("PPid:"))


def _track(address, plate, out, point, frames=FRAMES, started=None):
    """One client: open a clip, click, propagate to `out`; returns the client's wall time in seconds."""
    with Client(address) as client:
        clip = client.open_clip(plate, frames, colorspace="ACEScg")
        clip.prompt(int(frames.split("-")[0]), "hero", points=[(*point, True)])
        if started is not None:
            started.wait(60)  # both clips open (so they landed on different workers) before either runs
        t0 = time.monotonic()
        for _ in clip.propagate(direction="forward", out=str(out), edge="raw"):
            pass
        return time.monotonic() - t0


def test_hello_and_status_list_every_worker(two_cpus):
    with Client(two_cpus.address) as client:
        info = client.hello()
        status = client.status()
    assert info["devices"] == ["cpu", "cpu"] and info["device"] == "cpu" and info["model"] == "random_tiny.pt"
    workers = status["workers"]
    assert [w["worker"] for w in workers] == [0, 1] and all(w["state"] == "ready" for w in workers)
    pids = {w["pid"] for w in workers}
    assert len(pids) == 2 and two_cpus.process.pid not in pids  # each model in a process of its own
    assert all(_parent_of(pid) == two_cpus.process.pid for pid in pids)
    assert all(w["memory"].get("rss_mb", 0) > 100 for w in workers)  # a model each (the front holds none)
    assert status["memory"]["rss_mb"] < min(w["memory"]["rss_mb"] for w in workers)


def test_two_propagations_run_on_different_workers_and_equal_one_device(
    two_cpus, mb_server, bedroom_plate, tmp_path, capsys
):
    points = {"a": (300, 300), "b": (650, 300)}
    alone = _track(two_cpus.address, bedroom_plate, tmp_path / "alone" / "m.####.exr", points["a"])

    started, seen_workers, walls = threading.Barrier(2), set(), {}

    def one(name):
        out = tmp_path / "both" / name / "m.####.exr"
        walls[name] = _track(two_cpus.address, bedroom_plate, out, points[name], started=started)

    threads = [threading.Thread(target=one, args=(n,)) for n in points]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    with Client(two_cpus.address) as watcher:
        while any(t.is_alive() for t in threads):
            seen_workers |= {j["worker"] for j in watcher.status()["jobs"]}
            time.sleep(0.2)
    both = time.monotonic() - t0
    assert seen_workers == {0, 1}, seen_workers  # the two clips were on different workers, running together
    with capsys.disabled():
        print(f"\n--devices cpu,cpu: one propagation {alone:.1f}s; two at once {both:.1f}s ({both / alone:.2f}x)")

    # The same clicks on a one-device server give the same mattes, within float rounding: there the model runs on
    # both cores' threads, here on one each (cores / workers), which sums in another order (half-float files).
    for name, point in points.items():
        single = tmp_path / "single" / name / "m.####.exr"
        _track(mb_server.address, bedroom_plate, single, point)
        for frame in range(1001, 1013):
            a, _ = read_exr(str(single).replace("####", str(frame)))
            b, _ = read_exr(str(tmp_path / "both" / name / f"m.{frame}.exr"))
            np.testing.assert_allclose(a, b, atol=2e-3, err_msg=f"{name} frame {frame}")
            assert np.mean(np.abs(a - b)) < 1e-4


def test_a_dead_worker_fails_only_its_clips_and_is_started_again(checkpoint, bedroom_plate, tmp_path):
    server = ServerProcess(checkpoint, tmp_path, "--devices", "cpu,cpu")
    try:
        with Client(server.address) as a, Client(server.address) as b:
            clip_a = a.open_clip(bedroom_plate, "1001-1020", colorspace="ACEScg")
            clip_b = b.open_clip(bedroom_plate, "1001-1020", colorspace="ACEScg")
            clip_a.prompt(1001, "hero", points=[(300, 300, True)])
            clip_b.prompt(1001, "hero", points=[(650, 300, True)])
            run_a = clip_a.propagate(direction="forward", out=str(tmp_path / "a" / "m.####.exr"), edge="raw")
            next(run_a)  # a's job is running
            status = a.status()
            (job,) = [j for j in status["jobs"] if j["job"] == run_a.job]
            victim = status["workers"][job["worker"]]
            assert victim["clips"] == 1 and victim["pid"]

            results_b, errors_b = [], []

            def run_b():
                try:
                    for result in clip_b.propagate(
                        direction="forward", out=str(tmp_path / "b" / "m.####.exr"), edge="raw"
                    ):
                        results_b.append(result.frame)
                except Exception as e:  # reported below
                    errors_b.append(e)

            thread = threading.Thread(target=run_b)
            thread.start()
            wait_for(lambda: results_b, 60, "b's first frame")
            os.kill(victim["pid"], signal.SIGKILL)

            with pytest.raises(ServerError) as lost:
                for _ in run_a:
                    pass
            assert lost.value.code == "worker_lost", lost.value
            assert "the model worker on cpu was killed by SIGKILL at frame" in str(lost.value), lost.value
            assert a.hello()["devices"] == ["cpu", "cpu"]  # the server answers while b's job runs on
            with pytest.raises(ServerError) as gone:
                clip_a.prompt(1002, "hero", points=[(300, 300, True)])
            assert gone.value.code == "worker_lost" and f"clip {clip_a.id}" in str(gone.value)

            thread.join(300)
            assert not errors_b, errors_b
            assert results_b == list(range(1001, 1021))  # the other client's job ran to its end
            assert sorted(os.listdir(tmp_path / "b")) == [f"m.{f}.exr" for f in range(1001, 1021)]

            restarted = wait_for(
                lambda: (lambda w: w if w["state"] == "ready" else None)(a.status()["workers"][job["worker"]]),
                120,
                "the dead worker to be started again",
            )
            assert restarted["restarts"] == 1 and restarted["pid"] != victim["pid"]
            assert restarted["last_error"] == "the model worker on cpu was killed by SIGKILL"
            again = a.open_clip(bedroom_plate, "1001-1003", colorspace="ACEScg")
            assert again.prompt(1001, "hero", points=[(300, 300, True)]).alpha["hero"].shape == (540, 960)
    finally:
        assert server.stop() == 0
    assert "the model worker on cpu was killed by SIGKILL; starting it again" in server.log()


def test_a_worker_that_cannot_load_its_model_fails_the_start_in_one_line(checkpoint, tmp_path):
    from conftest import model_args, run_cli

    code, out, err = run_cli("serve", "--bind", "tcp://127.0.0.1:0", *model_args(checkpoint), "--devices", "cpu,cuda:0")
    assert code == 2 and "ready on" not in out
    assert err.strip().splitlines()[-1].endswith("--device cuda:0: CUDA is not available on this machine"), err
    assert "Traceback" not in err

    code, _, err = run_cli("serve", *model_args(checkpoint), "--devices", "cpu,gpu")
    assert code == 2 and "--devices: 'gpu': expected a comma-separated list of cpu, cuda, cuda:N or mps" in err


def test_workers_end_with_the_front_even_when_it_is_killed(checkpoint, tmp_path):
    server = ServerProcess(checkpoint, tmp_path, "--devices", "cpu,cpu")
    with Client(server.address) as client:
        pids = [w["pid"] for w in client.status()["workers"]]
    server.stop(signal.SIGKILL)  # no chance to tell its workers
    wait_for(lambda: not any(_alive(pid) for pid in pids), 30, "the orphaned workers to end")


def _alive(pid: int) -> bool:
    """Running (an ended process nobody has reaped yet is a zombie: State Z)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(line.split()[1] for line in f if line.startswith("State:")) != "Z"
    except FileNotFoundError:
        return False


def test_the_devices_benchmark_runs_end_to_end():
    """bench/devices_bench.py at a tiny size, so it cannot rot; no timing is asserted, only that it measures."""
    import re
    import subprocess
    import sys

    from conftest import REPO

    args = ["--rounds", "1", "--frames", "2", "--width", "96", "--height", "64", "--image-size", "64"]
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "devices_bench.py"), *args], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| --devices")]
    assert [r.split("|")[1].strip() for r in rows] == ["--devices cpu", "--devices cpu,cpu"]
    assert re.search(
        r"\*\*two at once, --devices cpu,cpu / cpu: \d+\.\d\dx \(best\) / \d+\.\d\dx \(median\)\*\*", done.stdout
    )


def test_a_second_sigint_stops_at_once_without_waiting_for_the_frame_in_progress(checkpoint, bedroom_plate, tmp_path):
    """The first SIGINT lets running frames finish (complete files only); a second one ends the server now."""
    server = ServerProcess(checkpoint, tmp_path, "--devices", "cpu,cpu")
    with Client(server.address) as client:
        pids = [w["pid"] for w in client.status()["workers"]]
        clip = client.open_clip(bedroom_plate, "1001-1020", colorspace="ACEScg")
        clip.prompt(1001, "hero", points=[(300, 300, True)])
        run = clip.propagate(direction="forward", out=str(tmp_path / "m.####.exr"), edge="soft")
        next(run)
        os.kill(pids[0], signal.SIGSTOP)  # a worker stuck in a frame (a hung GPU call, a huge plate)
        try:
            server.process.send_signal(signal.SIGINT)
            wait_for(lambda: "again to stop at once" in server.log(), 10, "the first SIGINT")
            assert server.process.poll() is None  # waiting for the stuck worker
            server.process.send_signal(signal.SIGINT)
            server.process.wait(20)
        finally:
            if _alive(pids[0]):  # else the front killed it, as it should have
                os.kill(pids[0], signal.SIGCONT)
    assert server.stop() == 0
    wait_for(lambda: not any(_alive(pid) for pid in pids), 30, "the workers to end")
