"""A stalled daemon and a job of ranks with forked workers: the workers' wait said once, each
worker's outcome in one line, and status tells spool files the resumed daemon wrote whole from
those still waiting.

Each rank (a process of its own) starts a run, then logs while the daemon is stopped (SIGSTOP)
and forks three workers (multiprocessing's fork, or os.fork) that log into its run and exit. Each
of the 8 processes printed a "waiting up to 1 s more ..." line and then its "N events were not
delivered ...; they are spooled to ..." line (2 ranks of 3 workers: 16 lines; 4 ranks of 2, 24; 8 of 8, 144). Once
the daemon resumed it wrote everything the kernel had held on the dropped connections, yet
`trackd daemon status` listed every spool file as waiting ("run `trackd sync`"), and `trackd
sync` then "delivered 1 batch" of each: an empty one, the close's flush barrier spooled as a
batch no daemon had seen.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from helpers import DaemonProcess, child_env, wait_for
from mlflow.tracking import MlflowClient

RANKS = 2
WORKERS = 3
RANK_POINTS = 100
WORKER_POINTS = 200

# argv: rank, the folder of the flag files, "mp" (multiprocessing's fork) or "os" (os.fork).
# The run is in the store before the daemon is stopped; then every point goes out while it is.
JOB = """
import multiprocessing, os, sys, time, trackd

rank, folder, how = int(sys.argv[1]), sys.argv[2], sys.argv[3]

def work(worker):
    for step in range(WORKER_POINTS):
        trackd.log_metric(f"worker{worker}", float(step), step=step)

run = trackd.start_run(run_name=f"rank{rank}")
trackd.log_param("rank", rank)
trackd.flush()
open(os.path.join(folder, f"ready{rank}"), "w").close()
while not os.path.exists(os.path.join(folder, "go")):  # the daemon is stopped then
    time.sleep(0.01)
for step in range(RANK_POINTS):
    trackd.log_metric("rank", float(step), step=step)
if how == "mp":
    workers = [multiprocessing.get_context("fork").Process(target=work, args=(w,)) for w in range(WORKERS)]
    for process in workers:
        process.start()
    for process in workers:
        process.join()
else:
    pids = []
    for worker in range(WORKERS):
        pid = os.fork()
        if pid == 0:
            work(worker)
            sys.exit(0)  # atexit delivers the child's points
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
print(run.info.run_id, flush=True)
""".replace("WORKER_POINTS", str(WORKER_POINTS)).replace("RANK_POINTS", str(RANK_POINTS)).replace("WORKERS", str(WORKERS))

# One process that logs far more than the socket and its window hold while the daemon is stopped:
# what was not sent before the exit gave the daemon up is in the spool file only.
BIG_JOB = """
import os, sys, time, trackd

run = trackd.start_run(run_name="big")
trackd.flush()
open(os.path.join(sys.argv[1], "ready"), "w").close()
while not os.path.exists(os.path.join(sys.argv[1], "go")):
    time.sleep(0.01)
for step in range(POINTS):
    trackd.log_metric("x", float(step), step=step)
print(run.info.run_id, flush=True)
"""
BIG_POINTS = 100_000

SPEAKER = re.compile(r"^trackd(?: \(([^)]*)\))?: ")
WRITTEN_WORDS = "whose every batch the daemon has written already"
WAITING_WORDS = "of exited processes waiting in"


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "trackd", *args], env=env, capture_output=True, text=True, timeout=120)


def _written_up(daemon: DaemonProcess, clients: int) -> bool:
    """The resumed daemon has read and written what every one of ``clients`` sent (and they left)."""
    listed = [client for client in daemon.status()["clients"] if client.get("store")]
    return len(listed) >= clients and all(
        not client["connected"] and client["written_seq"] == client["received_seq"] for client in listed
    )


def _env(daemon: DaemonProcess, store: Path, spool: Path) -> dict[str, str]:
    return child_env(
        daemon.paths.socket, TRACKD_TRACKING_URI=str(store), TRACKD_EXIT_TIMEOUT="2", TRACKD_SPOOL_DIR=str(spool),
        TRACKD_AUTOSTART="0", MLFLOW_ALLOW_FILE_STORE="true", MLFLOW_DISABLE_TELEMETRY="true",
    )


def _stalled_job(daemon: DaemonProcess, env: dict[str, str], folder: Path, how: str) -> tuple[list[Path], list[str]]:
    """Run the ranks of JOB (workers forked by ``how``) with the daemon stopped from their first
    point to their exit, then resumed until it wrote what it held; returns each rank's stderr
    file and its run id."""
    script = folder / "job.py"
    script.write_text(JOB)
    errs = [folder / f"err{rank}" for rank in range(RANKS)]
    jobs = []
    for rank in range(RANKS):
        with errs[rank].open("w") as err:
            jobs.append(subprocess.Popen(
                [sys.executable, str(script), str(rank), str(folder), how], env=env, stdout=subprocess.PIPE, stderr=err, text=True,
            ))
    try:
        wait_for(lambda: all((folder / f"ready{rank}").exists() for rank in range(RANKS)), timeout=60, message="the ranks' runs")
        with daemon.paused():
            (folder / "go").touch()
            run_ids = [job.communicate(timeout=60)[0].strip() for job in jobs]
    finally:
        for job in jobs:
            if job.poll() is None:
                job.kill()
    assert all(job.returncode == 0 for job in jobs), [path.read_text() for path in errs]
    wait_for(lambda: _written_up(daemon, RANKS * (1 + WORKERS)), timeout=30, message="the resumed daemon to write what it held")
    return errs, run_ids


@pytest.mark.parametrize("how", ["mp", "os"])
def test_forked_workers_say_their_wait_once_and_each_where_its_events_went(
    daemon: DaemonProcess, store: Path, tmp_path: Path, how: str
) -> None:
    spool = tmp_path / "spool"
    env = _env(daemon, store, spool)
    errs, _ = _stalled_job(daemon, env, tmp_path, how)
    for path in errs:
        lines = path.read_text().splitlines()
        assert all(SPEAKER.match(line) for line in lines), lines
        by_process = Counter(SPEAKER.match(line).group(1) for line in lines)  # type: ignore[union-attr]
        workers = [name for name in by_process if name is not None]
        # Each worker names itself ("ForkProcess-1, pid N", or "pid N" where it said "trackd:" as
        # its parent does) and says what became of its events.
        assert len(workers) == WORKERS, lines
        worker_lines = [line for line in lines if SPEAKER.match(line).group(1) is not None]  # type: ignore[union-attr]
        outcome = [line for line in worker_lines if "were not delivered" in line]
        assert len(outcome) == WORKERS, lines
        assert all(f"{WORKER_POINTS} events were not delivered" in line and "spooled to" in line for line in outcome), lines
        # Their wait, together (their parent joins them), is said once: each said it ("waiting up
        # to 1 s more ..."), and none, with their parent quiet in its join, is silence.
        waiting = [line for line in worker_lines if "waiting up to" in line]
        assert 1 <= len(waiting) < WORKERS and len(worker_lines) == len(outcome) + len(waiting), lines
        # The rank waits after them (its line says so), then says where its events went.
        assert by_process[None] <= 2 and any("spooled to" in line for line in lines if line.startswith("trackd: ")), lines
    # Nothing is lost for the quiet: every file is there for `trackd sync`.
    _cli(env, "sync", "--spool-dir", str(spool))


def test_status_says_the_resumed_daemon_wrote_the_spool_files_whole(daemon: DaemonProcess, store: Path, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    env = _env(daemon, store, spool)
    _, run_ids = _stalled_job(daemon, env, tmp_path, "mp")
    client = MlflowClient(tracking_uri=str(store))
    for run_id in run_ids:
        assert [m.step for m in client.get_metric_history(run_id, "rank")] == list(range(RANK_POINTS))
        for worker in range(WORKERS):
            history = sorted(m.step for m in client.get_metric_history(run_id, f"worker{worker}"))
            assert history == list(range(WORKER_POINTS)), (run_id, worker)

    status = _cli(env, "daemon", "status", "--spool-dir", str(spool))
    assert status.returncode == 0, status.stderr
    spool_lines = [line for line in status.stdout.splitlines() if line.lstrip().startswith("spool")]
    files = RANKS * (1 + WORKERS)
    # They were listed as waiting, "run `trackd sync`".
    assert len(spool_lines) == 1 and f"{files} files" in spool_lines[0] and WRITTEN_WORDS in spool_lines[0], status.stdout
    assert WAITING_WORDS not in status.stdout

    sync = _cli(env, "sync", "--spool-dir", str(spool))
    assert sync.returncode == 0, sync.stdout + sync.stderr
    said = sync.stdout.splitlines()
    # It "delivered 1 batch" of each: an empty one, the close's flush barrier.
    assert len(said) == files and all("nothing to send: the store had every batch" in line for line in said), said
    assert not list(spool.glob("*.spool"))


def test_a_spool_with_batches_the_daemon_never_received_is_still_waiting(
    daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    # Its calls wait for room in its full buffer until the daemon is given up (and its events spooled).
    env = {**_env(daemon, store, spool), "TRACKD_CONNECT_TIMEOUT": "2"}
    script = tmp_path / "big.py"
    script.write_text(BIG_JOB.replace("POINTS", str(BIG_POINTS)))
    with (tmp_path / "err").open("w") as err:
        job = subprocess.Popen([sys.executable, str(script), str(tmp_path)], env=env, stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        wait_for(lambda: (tmp_path / "ready").exists(), timeout=60, message="the run")
        with daemon.paused():
            (tmp_path / "go").touch()
            run_id = job.communicate(timeout=60)[0].strip()
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 0, (tmp_path / "err").read_text()
    wait_for(lambda: _written_up(daemon, 1), timeout=30, message="the resumed daemon to write what it held")
    client = MlflowClient(tracking_uri=str(store))
    written = len(client.get_metric_history(run_id, "x"))
    assert written < BIG_POINTS  # the socket held only part of them

    status = _cli(env, "daemon", "status", "--spool-dir", str(spool))
    assert status.returncode == 0, status.stderr
    assert WAITING_WORDS in status.stdout and "1 file " in status.stdout and WRITTEN_WORDS not in status.stdout, status.stdout

    sync = _cli(env, "sync", "--spool-dir", str(spool))
    assert sync.returncode == 0 and "delivered" in sync.stdout, sync.stdout + sync.stderr
    assert sorted(m.step for m in client.get_metric_history(run_id, "x")) == list(range(BIG_POINTS))
