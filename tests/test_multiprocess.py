"""Many real processes and one daemon: autostart races, one shared run, and a daemon restart mid-stream."""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import DaemonProcess, child_env, metric_lines, wait_for
from mlflow.tracking import MlflowClient

from trackd._paths import DaemonPaths




StartChildren = Callable[[str, list[dict[str, str]], Path], list[subprocess.Popen[str]]]


@pytest.fixture
def start_children() -> Iterator[StartChildren]:
    """Start Python children running ``code``, one per env; any still running at the end is killed."""
    started: list[subprocess.Popen[str]] = []

    def start(code: str, envs: list[dict[str, str]], cwd: Path) -> list[subprocess.Popen[str]]:
        children = [
            subprocess.Popen([sys.executable, "-c", code], env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for env in envs
        ]
        started.extend(children)
        return children

    yield start
    for child in started:
        if child.poll() is None:
            child.kill()
        child.communicate(timeout=30)


def wait_children(children: list[subprocess.Popen[str]], timeout: float = 60.0) -> list[str]:
    """Wait for every child; fail with its stderr unless it exited 0. Returns their stdouts."""
    outputs = []
    for child in children:
        out, err = child.communicate(timeout=timeout)
        assert child.returncode == 0, f"child exited {child.returncode}:\n{err}"
        outputs.append(out)
    return outputs


def steps_in(store: Path, run_id: str, key: str) -> list[int]:
    return [int(line.split(" ")[2]) for line in metric_lines(store, run_id, key)]


AUTOSTART_CHILD = """
import os, sys, time
from pathlib import Path
import trackd
from trackd.client._control import query_status

go = Path(os.environ["GO_FILE"])
(go.parent / f"ready-{os.getpid()}").touch()
deadline = time.monotonic() + 60
while not go.exists():
    assert time.monotonic() < deadline, "no go signal"
    time.sleep(0.005)
with trackd.start_run() as run:
    for step in range(2000):
        trackd.log_metric("loss", step * 0.5, step=step)
    trackd.flush(timeout=30)
print(run.info.run_id, query_status(Path(os.environ["TRACKD_SOCKET"]))["pid"])
"""


@pytest.mark.timeout(120)
def test_sixteen_processes_starting_at_once_share_one_autostarted_daemon(
    paths: DaemonPaths, tmp_path: Path, start_children: StartChildren
) -> None:
    go = tmp_path / "go"
    env = child_env(paths.socket, GO_FILE=str(go), TRACKD_AUTOSTART="1")
    children = start_children(AUTOSTART_CHILD, [env] * 16, tmp_path)
    # Once every child has imported trackd and waits for the go file, all of them find no daemon
    # at nearly the same moment.
    wait_for(lambda: len(list(tmp_path.glob("ready-*"))) == 16, timeout=60, message="16 children to be ready")
    assert not paths.socket.exists()
    go.touch()
    outputs = wait_children(children)
    reports = [out.split() for out in outputs]
    daemon_pids = {int(pid) for _, pid in reports}
    assert daemon_pids == {int(paths.pid.read_text())}
    assert paths.log.read_text().count("listening on") == 1
    # Only one was started: each of the 16 started its own, and 15 imported the whole daemon only
    # to exit "already running", on the cores the jobs needed.
    assert "Not starting" not in paths.log.read_text()
    for run_id, _ in reports:
        assert steps_in(tmp_path / "mlruns", run_id, "loss") == list(range(2000))


SHARED_RUN_CHILD = """
import os, time
from pathlib import Path
import trackd

rank = int(os.environ["RANK"])
with trackd.start_run(run_id=os.environ["SHARED_RUN_ID"]):
    for step in range(10_000):
        trackd.log_metric(f"rank{rank}/loss", 1.0 / (step + 1), step=step)
        trackd.log_metric("shared", float(rank), step=step)
    if rank == 0:
        # Rank 0 ends the run; it waits until the parent has seen the other ranks leave it running.
        trackd.flush(timeout=30)
        release, deadline = Path(os.environ["RELEASE_FILE"]), time.monotonic() + 60
        while not release.exists():
            assert time.monotonic() < deadline, "never released"
            time.sleep(0.01)
"""


@pytest.mark.timeout(120)
def test_eight_ranks_log_into_one_run_and_mlflow_reads_every_point(
    daemon: DaemonProcess, tmp_path: Path, start_children: StartChildren
) -> None:
    run_id = uuid.uuid4().hex
    store = tmp_path / "mlruns"
    release = tmp_path / "release"
    envs = [
        child_env(daemon.paths.socket, SHARED_RUN_ID=run_id, RANK=str(rank), RELEASE_FILE=str(release), TRACKD_AUTOSTART="0")
        for rank in range(8)
    ]
    rank0, *others = start_children(SHARED_RUN_CHILD, envs, tmp_path)
    wait_children(others)
    mlflow = MlflowClient(tracking_uri=str(store))
    # Ranks 1-7 attached to the run and left; only its owner, rank 0, may end it.
    assert mlflow.get_run(run_id).info.status == "RUNNING"
    release.touch()
    wait_children([rank0])
    for rank in range(8):
        history = mlflow.get_metric_history(run_id, f"rank{rank}/loss")
        assert [m.step for m in history] == list(range(10_000))
    shared = mlflow.get_metric_history(run_id, "shared")
    assert len(shared) == 80_000
    for rank in range(8):
        # Ranks interleave in the shared file, but each rank's points keep their order.
        assert [m.step for m in shared if m.value == rank] == list(range(10_000))
    for line in metric_lines(store, run_id, "shared"):
        timestamp, value, step = line.split(" ")
        assert int(timestamp) > 0 and float(value) in range(8) and 0 <= int(step) < 10_000
    assert mlflow.get_run(run_id).info.status == "FINISHED"


FAILING_RANK_CHILD = """
import os, time
from pathlib import Path
import trackd

rank, release = os.environ["RANK"], Path(os.environ["RELEASE_FILE"])
with trackd.start_run(run_id=os.environ["SHARED_RUN_ID"]):
    trackd.log_metric(f"rank{rank}/loss", 1.0)
    trackd.flush(timeout=30)
    if rank == "1":
        raise RuntimeError("rank 1 ran out of memory")
    (release.parent / "rank0-attached").touch()
    deadline = time.monotonic() + 60
    while not release.exists():  # rank 0 outlives rank 1's failure, then leaves the block cleanly
        assert time.monotonic() < deadline, "never released"
        time.sleep(0.01)
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("rank0_ends", ["normally", "by-sigterm"])
def test_a_run_another_rank_failed_stays_failed_when_rank_0_ends_it(
    daemon: DaemonProcess, tmp_path: Path, start_children: StartChildren, rank0_ends: str
) -> None:
    # Rank 1's exception marked the run FAILED; rank 0, leaving its block normally a moment later,
    # ended it FINISHED over that, and nothing in the run said a rank had failed. torchrun SIGTERMs
    # the other ranks when one fails: rank 0's KILLED hid the FAILED the same way.
    run_id = uuid.uuid4().hex
    release = tmp_path / "release"
    env = {"SHARED_RUN_ID": run_id, "RELEASE_FILE": str(release), "TRACKD_AUTOSTART": "0"}
    [rank0] = start_children(FAILING_RANK_CHILD, [child_env(daemon.paths.socket, RANK="0", **env)], tmp_path)
    wait_for(lambda: (tmp_path / "rank0-attached").exists() or rank0.poll() is not None, timeout=60)
    [rank1] = start_children(FAILING_RANK_CHILD, [child_env(daemon.paths.socket, RANK="1", **env)], tmp_path)
    _, err = rank1.communicate(timeout=60)
    assert rank1.returncode == 1 and "rank 1 ran out of memory" in err
    mlflow = MlflowClient(tracking_uri=str(tmp_path / "mlruns"))
    assert mlflow.get_run(run_id).info.status == "FAILED"
    if rank0_ends == "normally":
        release.touch()
        wait_children([rank0])
    else:
        rank0.send_signal(signal.SIGTERM)
        rank0.communicate(timeout=60)
        assert rank0.returncode == -signal.SIGTERM
    run = mlflow.get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.metrics == {"rank0/loss": 1.0, "rank1/loss": 1.0}


STREAMING_CHILD = """
import time
import trackd

with trackd.start_run() as run:
    print(run.info.run_id, flush=True)
    for step in range(50_000):
        trackd.log_metric("loss", float(step), step=step)
        if step % 1000 == 999:
            time.sleep(0.02)
    trackd.flush(timeout=60)
"""


@pytest.mark.timeout(120)
def test_clients_reconnect_to_a_new_daemon_after_sigterm_and_every_point_is_written_once(
    daemon: DaemonProcess, paths: DaemonPaths, tmp_path: Path, start_children: StartChildren
) -> None:
    store = tmp_path / "mlruns"
    env = child_env(paths.socket, TRACKD_AUTOSTART="1")
    children = start_children(STREAMING_CHILD, [env] * 4, tmp_path)
    run_ids = [child.stdout.readline().strip() for child in children]  # type: ignore[union-attr]
    # Stop the daemon a fifth of the way through the stream.
    wait_for(lambda: int(str(daemon.status()["records_received"])) >= 40_000, timeout=30, message="the stream to start")
    daemon.signal(signal.SIGTERM)
    assert daemon.process is not None and daemon.process.wait(30) == 0, daemon.log()
    wait_children(children, timeout=90)
    new_pid = int(paths.pid.read_text())
    assert new_pid != daemon.pid
    log = paths.log.read_text()
    for run_id in run_ids:
        steps = steps_in(store, run_id, "loss")
        duplicates = [step for step, count in Counter(steps).items() if count > 1]
        assert not duplicates, f"{len(duplicates)} steps of run {run_id} written twice, e.g. {duplicates[:5]}\n{log}"
        assert steps == list(range(50_000)), f"run {run_id}: {len(steps)} of 50000 points, in order: {steps == sorted(steps)}\n{log}"
