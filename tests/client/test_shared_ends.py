"""A job resuming a RUNNING run without RANK co-owns it, and the last live owner's end ends it.

``start_run(run_id=...)`` of a run found RUNNING only detached, to protect a run another live process
owns. A requeued job whose last attempt died unseen by the daemon (another node, an MLflow process)
then trained to the end and left the run RUNNING for ever; one restarted within a second of its
SIGKILL had its run failed by the dead attempt's will after it completed. The resuming process now
owns the run too (its will names it), and every end trackd makes by itself is a shared end: the
daemon writes it only if no other live process owns the run then. Real daemon, real processes and
signals; MLflow reads the store.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from fluent_helpers import fluent_env, mlflow_reader, quiet_result, run_child
from helpers import Child, DaemonProcess, child_env, run_python, short_socket_path, wait_for

FAILURE_REASON_TAG = "trackd.failure_reason"

RESUMED_JOB = """
import json, trackd
with trackd.start_run(run_id={run_id!r}):
    trackd.log_metric("loss", 0.5, step=1)
print(json.dumps({{}}))
"""

# Owns (creates, or resumes) run argv[1] ("" for a new one), prints its id, waits for file argv[2],
# then ends its with-block (or is killed meanwhile).
GATED_OWNER = """
import os, sys, time, trackd
with trackd.start_run(run_id=sys.argv[1] or None) as run:
    trackd.log_metric("loss", 1.0, step=0)
    trackd.flush()
    print(run.info.run_id, flush=True)
    deadline = time.monotonic() + 60
    while not os.path.exists(sys.argv[2]) and time.monotonic() < deadline:
        time.sleep(0.01)
print("ended", flush=True)
"""


def status(store: Path, run_id: str) -> str:
    return str(mlflow_reader(store).get_run(run_id).info.status)


def started(child: Child) -> str:
    """The run id the gated child printed once its run was in the store."""
    wait_for(lambda: bool(child.out) or child.process.poll() is not None, timeout=30, message="the child's run")
    assert child.out, child.stderr()
    return child.out[0]


def test_a_job_resuming_a_run_an_unseen_process_left_running_ends_it_finished(daemon: DaemonProcess, store: Path) -> None:
    # Left RUNNING by a process this daemon never knew: here MLflow's own, as a crashed node's would be.
    # This used to stay RUNNING for ever after the resumed job's end (MLflow's resume ends it FINISHED).
    run_id = mlflow_reader(store).create_run("0").info.run_id
    quiet_result(run_child(RESUMED_JOB.format(run_id=run_id), fluent_env(daemon, store)))
    assert status(store, run_id) == "FINISHED"
    assert [m.value for m in mlflow_reader(store).get_metric_history(run_id, "loss")] == [0.5]


def test_a_job_restarted_before_the_daemon_saw_its_sigkill_ends_its_run_finished(
    daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    # A wrapper restarting an OOM-killed job at once: the resume finds the run RUNNING. This used to
    # only attach, and the dead attempt's will then failed the run the resumed job completed.
    gate = tmp_path / "go"
    with Child(GATED_OWNER, ["", str(tmp_path / "never")], fluent_env(daemon, store)) as first:
        run_id = started(first)
        with Child(GATED_OWNER, [run_id, str(gate)], fluent_env(daemon, store)) as second:
            assert started(second) == run_id
            first.process.send_signal(signal.SIGKILL)
            assert first.wait(timeout=30) == -signal.SIGKILL
            wait_for(
                lambda: f"Marked run {run_id} FAILED" in daemon.log() or "which a live process owns too" in daemon.log(),
                timeout=30, message="the daemon's handling of the killed process's will",
            )
            gate.touch()
            assert second.wait(timeout=60) == 0, second.stderr()
    run = mlflow_reader(store).get_run(run_id)
    assert run.info.status == "FINISHED"
    assert FAILURE_REASON_TAG not in run.data.tags


def test_a_worker_resuming_its_parents_run_by_id_leaves_it_to_the_parent(
    daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    # A worker started without the parent's lineage (TRACKD_OWNED_RUNS not passed on) resumes the
    # parent's live run by id: its end is a detach while the parent runs, and the parent's end then
    # finishes the run. (A guard of the co-owner's shared end: the old code only detached too.)
    gate = tmp_path / "go"
    with Child(GATED_OWNER, ["", str(gate)], fluent_env(daemon, store)) as parent:
        run_id = started(parent)
        quiet_result(run_child(RESUMED_JOB.format(run_id=run_id), fluent_env(daemon, store)))
        assert status(store, run_id) == "RUNNING"
        gate.touch()
        assert parent.wait(timeout=60) == 0, parent.stderr()
    assert status(store, run_id) == "FINISHED"
    assert f"Run {run_id} was ended by process" in daemon.log()  # a detach, said in its log


def test_the_last_live_owner_to_end_a_shared_run_ends_it(daemon: DaemonProcess, store: Path, tmp_path: Path) -> None:
    # Ranks started without RANK (srun, mpirun) share one run: the first to end only detaches, the
    # last ends it. This used to end it FINISHED at the first end, the others still logging to it.
    gate = tmp_path / "go"
    with Child(GATED_OWNER, ["", str(tmp_path / "first")], fluent_env(daemon, store)) as first:
        run_id = started(first)
        with Child(GATED_OWNER, [run_id, str(gate)], fluent_env(daemon, store)) as last:
            assert started(last) == run_id
            (tmp_path / "first").touch()
            assert first.wait(timeout=60) == 0, first.stderr()
            assert status(store, run_id) == "RUNNING"
            gate.touch()
            assert last.wait(timeout=60) == 0, last.stderr()
    assert status(store, run_id) == "FINISHED"


PREEMPTED_ATTEMPT = """
import os, signal, trackd
run = trackd.start_run()
trackd.log_metric("loss", 1.0, step=0)
print(run.info.run_id, flush=True)
os.kill(os.getpid(), signal.SIGTERM)  # preempted: trackd ends the run KILLED, here into the spool
"""


def test_a_preempted_attempts_spooled_end_delivered_after_the_resumed_run_finished_leaves_it_finished(
    daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    # The first attempt reached no daemon: everything it logged, its KILLED end included, is in its
    # spool. The requeued attempt makes the run again and finishes it; `trackd sync` then delivers
    # the old spool. This used to end the run KILLED again, with the old end time.
    spool_dir = tmp_path / "spool"
    nowhere = short_socket_path()
    first = run_python(
        PREEMPTED_ATTEMPT, child_env(nowhere, TRACKD_AUTOSTART="0", TRACKD_TRACKING_URI=str(store), TRACKD_SPOOL_DIR=str(spool_dir))
    )
    assert first.returncode == -signal.SIGTERM or first.returncode == 128 + signal.SIGTERM, first.stderr
    run_id = first.stdout.split()[0]
    quiet_result(run_child(RESUMED_JOB.format(run_id=run_id), fluent_env(daemon, store)))
    assert status(store, run_id) == "FINISHED"
    sync = subprocess.run(
        [sys.executable, "-m", "trackd.cli", "sync", "--socket", str(daemon.paths.socket), "--spool-dir", str(spool_dir)],
        env=child_env(daemon.paths.socket), capture_output=True, text=True, timeout=60,
    )
    assert sync.returncode == 0 and "delivered" in sync.stdout, sync.stderr
    assert status(store, run_id) == "FINISHED"
    assert sorted(m.value for m in mlflow_reader(store).get_metric_history(run_id, "loss")) == [0.5, 1.0]
    assert os.listdir(spool_dir) == []


def test_a_preempted_attempts_spool_delivered_in_the_background_leaves_the_resumed_attempts_run_running(
    daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    # The requeued attempt's own client delivers the old spool (2 s after it connects) while it
    # trains: the old attempt's KILLED (a shared end, protocol 10) is a detach under the live
    # owner, and the run ends FINISHED. It used to end the run KILLED under the running attempt,
    # whose end then kept the KILLED.
    spool_dir, gate = tmp_path / "spool", tmp_path / "go"
    env = {"TRACKD_TRACKING_URI": str(store), "TRACKD_SPOOL_DIR": str(spool_dir)}
    first = run_python(PREEMPTED_ATTEMPT, child_env(short_socket_path(), TRACKD_AUTOSTART="0", **env))
    assert first.returncode == -signal.SIGTERM or first.returncode == 128 + signal.SIGTERM, first.stderr
    run_id = first.stdout.split()[0]
    with Child(GATED_OWNER, [run_id, str(gate)], fluent_env(daemon, store, TRACKD_SPOOL_DIR=str(spool_dir))) as second:
        assert started(second) == run_id
        wait_for(lambda: not list(spool_dir.glob("*.spool*")), timeout=30, message="the old spool's delivery")
        assert status(store, run_id) == "RUNNING"
        gate.touch()
        assert second.wait(timeout=60) == 0, second.stderr()
    assert status(store, run_id) == "FINISHED"
    assert sorted(m.value for m in mlflow_reader(store).get_metric_history(run_id, "loss")) == [1.0, 1.0]
