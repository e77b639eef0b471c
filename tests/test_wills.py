"""A run whose owning process died without ending it is marked FAILED by the daemon.

A training process SIGKILLed (the OOM killer, a scheduler, ``kill -9``) runs no exit hook: its run
stayed RUNNING for ever in MLflow's UI, as if it were still training. Each test runs the process
for real, kills it for real, and reads the run back with MLflow.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from helpers import DaemonProcess, child_env, fill, wait_for

from trackd._paths import DaemonPaths
from trackd.client._launcher import daemon_answers

from trackd.cli import main as cli_main

FAILURE_REASON_TAG = "trackd.failure_reason"

# The start of every child: log to the test's store, start a run, log three points, deliver them.
PROLOGUE = """
import os, signal, sys, trackd
trackd.set_tracking_uri({store!r})
run = trackd.start_run({start_args})
for step in range(3):
    trackd.log_metric("loss", step * 0.5, step=step)
trackd.flush()
print(run.info.run_id, flush=True)
"""
SIGKILL_SELF = "os.kill(os.getpid(), signal.SIGKILL)\n"
WAIT_FOR_STDIN = "sys.stdin.readline()\n"


def start_child(store: Path, socket_path: Path, body: str, *, start_args: str = "", **env: str) -> tuple[subprocess.Popen[str], str]:
    """A Python child that runs PROLOGUE then ``body``; returns it and its run id (printed once logged)."""
    code = PROLOGUE.format(store=str(store), start_args=start_args) + body
    child = subprocess.Popen(
        [sys.executable, "-c", code], env=child_env(socket_path, **{"TRACKD_AUTOSTART": "0", **env}),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert child.stdout is not None
    run_id = child.stdout.readline().strip()
    assert run_id, child.communicate(timeout=30)[1]
    return child, run_id


def finish(child: subprocess.Popen[str]) -> int:
    """Wait for the child, closing its pipes; its exit code (-9: SIGKILL)."""
    _, err = child.communicate(timeout=30)
    assert child.returncode in (0, -signal.SIGKILL), err
    return child.returncode


def mlflow_run(store: Path, run_id: str) -> Any:
    return MlflowClient(tracking_uri=f"file:{store}").get_run(run_id)


def wait_for_status(store: Path, run_id: str, status: str) -> Any:
    wait_for(lambda: mlflow_run(store, run_id).info.status == status, timeout=20, message=f"run {run_id} {status}")
    return mlflow_run(store, run_id)


def wait_until_no_will_is_pending(daemon: DaemonProcess) -> dict[str, Any]:
    """Every client gone and no will left to apply: a run failed for one is failed by now."""
    wait_for(
        lambda: (s := daemon.status())["clients_connected"] == 0 and s["wills_pending"] == 0,
        timeout=20, message="no client connected and no will pending",
    )
    return daemon.status()


def wait_until_only_spools_hold_wills(daemon: DaemonProcess) -> dict[str, Any]:
    """Every client gone and every will applied but those whose process exited leaving a spool
    (``trackd sync`` delivers it): a will whose time has come has failed its runs by now."""
    wait_for(
        lambda: (s := daemon.status())["clients_connected"] == 0 and s["wills_pending"] == s["wills_waiting"],
        timeout=20, message="no client connected and no will pending but those waiting for a spool",
    )
    return daemon.status()


def test_a_sigkilled_process_leaves_its_run_failed_with_its_points_and_the_reason(
    daemon: DaemonProcess, store: Path, socket_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The run stayed RUNNING for ever.
    child, run_id = start_child(store, socket_path, SIGKILL_SELF)
    assert finish(child) == -signal.SIGKILL
    run = wait_for_status(store, run_id, "FAILED")
    assert run.info.end_time is not None and run.info.end_time >= run.info.start_time
    reason = run.data.tags[FAILURE_REASON_TAG]
    assert f"process {child.pid} " in reason and "exited without ending the run" in reason
    history = MlflowClient(tracking_uri=f"file:{store}").get_metric_history(run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(0, 0.0), (1, 0.5), (2, 1.0)]
    assert daemon.status()["runs_failed_for_exited_clients"] == 1
    assert f"Marked run {run_id} FAILED" in daemon.log()
    assert cli_main(["daemon", "status", "--socket", str(socket_path)]) == 0
    assert "runs failed   1 left RUNNING by processes that exited without ending them" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("start_args", "body", "status"),
    [
        ("", "", "FINISHED"),  # no end_run: the exit hook ends it
        ("", "trackd.end_run()\n", "FINISHED"),
        ("", "with run:\n    trackd.log_metric('acc', 1.0)\n", "FINISHED"),
        ("", "with run:\n    raise ValueError('diverged')\n", "FAILED"),  # as before: no reason tag
    ],
    ids=["exit", "end_run", "with-block", "exception"],
)
def test_a_process_that_exits_normally_keeps_the_status_it_gave_its_run(
    daemon: DaemonProcess, store: Path, socket_path: Path, start_args: str, body: str, status: str
) -> None:
    child, run_id = start_child(store, socket_path, body, start_args=start_args)
    child.communicate(timeout=30)
    assert wait_until_no_will_is_pending(daemon)["runs_failed_for_exited_clients"] == 0
    run = mlflow_run(store, run_id)
    assert run.info.status == status
    assert FAILURE_REASON_TAG not in run.data.tags


@pytest.mark.parametrize(
    ("body", "start_args", "rank", "status"),
    [
        ("trackd.end_run()\n", "", "", "FINISHED"),  # ended, then killed: the end stands
        # Rank 0 ends a shared run; rank 1 dying (torchrun then stops the others) is not its end.
        ("", "run_id='shared0run'", "1", "RUNNING"),
    ],
    ids=["ended-then-killed", "attached-rank-1"],
)
def test_a_sigkilled_process_that_owns_no_running_run_leaves_the_run_as_it_is(
    daemon: DaemonProcess, store: Path, socket_path: Path, body: str, start_args: str, rank: str, status: str
) -> None:
    env = {"RANK": rank} if rank else {}
    child, run_id = start_child(store, socket_path, body + SIGKILL_SELF, start_args=start_args, **env)
    assert finish(child) == -signal.SIGKILL
    assert wait_until_no_will_is_pending(daemon)["runs_failed_for_exited_clients"] == 0
    assert mlflow_run(store, run_id).info.status == status


def test_a_forked_child_that_exits_does_not_fail_its_parents_run(
    daemon: DaemonProcess, store: Path, socket_path: Path
) -> None:
    # A DataLoader worker or fork Pool worker logs to the parent's run and leaves by os._exit.
    body = (
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    trackd.log_metric('worker', 1.0)\n"
        "    trackd.flush()\n"
        "    os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
        "print('child exited', flush=True)\n" + WAIT_FOR_STDIN
    )
    child, run_id = start_child(store, socket_path, body)
    assert child.stdout is not None and child.stdin is not None
    assert child.stdout.readline().strip() == "child exited"
    # The fork child's connection has ended and nothing waits to be applied.
    wait_for(lambda: (s := daemon.status())["clients_connected"] == 1 and s["wills_pending"] == 0, timeout=20)
    assert daemon.status()["runs_failed_for_exited_clients"] == 0
    assert mlflow_run(store, run_id).info.status == "RUNNING"
    child.communicate("\n", timeout=30)
    assert wait_for_status(store, run_id, "FINISHED").data.metrics["worker"] == 1.0


def owned_runs(daemon: DaemonProcess) -> int:
    """The runs the daemon's connected clients said they own."""
    return sum(int(client["owned_runs"]) for client in daemon.status()["clients"] if client["connected"])


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
@pytest.mark.parametrize("idle", [False, True], ids=["logging", "idle"])
def test_a_process_sigkilled_after_the_daemon_restarted_still_gets_its_run_failed(
    socket_path: Path, store: Path, signum: int, idle: bool
) -> None:
    # The client tells the new daemon its runs when it reconnects (the wills file holds them meanwhile).
    # An idle process reconnected only once it had something to send: its daemon restarted (stopped
    # and started, or killed and autostarted by another process), it was then SIGKILLed without a
    # word to the new daemon, and its run stayed RUNNING for ever.
    first = DaemonProcess(socket_path).start()
    body = WAIT_FOR_STDIN + "trackd.log_metric('loss', 9.0, step=3)\ntrackd.flush()\n" + SIGKILL_SELF
    child, run_id = start_child(store, socket_path, body)
    if signum == signal.SIGKILL:
        first.kill()
    else:
        assert first.stop() == 0
    second = DaemonProcess(socket_path).start()
    try:
        if idle:
            wait_for(lambda: owned_runs(second) == 1, timeout=20, message="the idle process telling the new daemon its run")
            child.kill()
            assert finish(child) == -signal.SIGKILL
        else:
            child.communicate("\n", timeout=30)
            assert child.returncode == -signal.SIGKILL
        run = wait_for_status(store, run_id, "FAILED")
        assert f"process {child.pid} " in run.data.tags[FAILURE_REASON_TAG]
        assert run.data.metrics["loss"] == (1.0 if idle else 9.0)
    finally:
        assert second.stop() == 0


def test_trackd_daemon_stop_with_idle_processes_owning_runs_leaves_no_daemon_running(
    socket_path: Path, store: Path, paths: DaemonPaths
) -> None:
    # The idle processes look for a daemon to tell their runs, now and then: they must start none,
    # say nothing, and not keep `trackd daemon stop` from stopping the one that runs.
    first = DaemonProcess(socket_path).start()
    children = [start_child(store, socket_path, WAIT_FOR_STDIN, TRACKD_AUTOSTART="1") for _ in range(3)]
    try:
        wait_for(lambda: owned_runs(first) == 3, timeout=20, message="three idle processes owning a run each")
        for _ in range(2):  # each stop leaves the idle processes looking for a daemon again
            assert cli_main(["daemon", "stop", "--socket", str(socket_path)]) == 0
            assert first.stop() == 0  # exited by itself (the CLI waited for it); reaped here
            # Long enough for every process to look several times (WILL_PROBE_MAX_INTERVAL: 2 s).
            time.sleep(5)
            assert not daemon_answers(socket_path, 0.5)
            assert not paths.pid.exists()
            first = DaemonProcess(socket_path).start()
            wait_for(lambda: owned_runs(first) == 3, timeout=20, message="the idle processes telling the new daemon")
        assert first.stop() == 0
        for child, _ in children:
            child.kill()
            _, err = child.communicate(timeout=30)
            assert child.returncode == -signal.SIGKILL
            assert err == "", err  # not a word about the daemons that came and went
    finally:
        for child, _ in children:
            if child.poll() is None:
                child.kill()
                child.communicate(timeout=30)


# The child leaves a spool file as a client does when no daemon takes its events: made by the
# client's own Spool, holding one batch after those the daemon has, with the run's end or a point.
SPOOL_AND_SIGKILL = """
from trackd.client._spool import Spool
from trackd.client._transport import make_hello
from trackd.protocol import SET_TERMINATED, METRIC, Batch, encode_frame
from trackd.client._fluent import get_client
sender = get_client()._sender
seq = sender.stats()["sent_seq"] + 1
record = {record}
Spool(sender.config.spool_dir, make_hello(sender.client_id, sender.store_root)).append(
    [(seq, encode_frame(Batch(seq=seq, records=[record])), 1)]
)
""" + SIGKILL_SELF

# What that batch holds, and the run's status once the spool is delivered and the will applied.
SPOOLED_RECORDS = pytest.mark.parametrize(
    ("record", "status"),
    [
        ("(SET_TERMINATED, run.info.run_id, 3, 1_700_000_000_000, True)", "FINISHED"),
        ("(METRIC, run.info.run_id, 'loss', 7.0, 1_700_000_000_000, 9)", "FAILED"),
    ],
    ids=["spool-holds-the-end", "spool-holds-a-point"],
)


@SPOOLED_RECORDS
def test_a_will_waits_for_the_spool_of_its_process_to_be_delivered(
    daemon: DaemonProcess, store: Path, socket_path: Path, record: str, status: str
) -> None:
    # The spool may hold the run's end: failing the run first would make it FAILED for good.
    child, run_id = start_child(store, socket_path, SPOOL_AND_SIGKILL.format(record=record))
    assert finish(child) == -signal.SIGKILL
    wait_for(lambda: daemon.status()["wills_waiting"] == 1, timeout=20, message="the will waiting for the spool")
    assert mlflow_run(store, run_id).info.status == "RUNNING"
    assert cli_main(["sync", "--socket", str(socket_path)]) == 0
    final = wait_until_no_will_is_pending(daemon)
    run = mlflow_run(store, run_id)
    assert run.info.status == status
    assert final["runs_failed_for_exited_clients"] == (status == "FAILED")
    assert (FAILURE_REASON_TAG in run.data.tags) == (status == "FAILED")
    assert not list(Path(os.environ["TRACKD_SPOOL_DIR"]).glob("*.spool"))


def test_a_run_whose_client_was_closed_by_hand_is_left_to_the_client_that_ends_it(
    daemon: DaemonProcess, store: Path, socket_path: Path, tmp_path: Path
) -> None:
    # The closed client's connection kept the run in its will; the client opened to end it spooled
    # that end behind a stalled daemon, which then failed the run for the old connection: the
    # spooled FINISHED, delivered later, could not undo it (it keeps a failure).
    spool_dir = tmp_path / "spool"  # its own: the end is spooled, and left there by a failure here
    body = "run.client.close()\nprint('closed', flush=True)\n" + WAIT_FOR_STDIN
    child, run_id = start_child(store, socket_path, body, TRACKD_EXIT_TIMEOUT="1", TRACKD_SPOOL_DIR=str(spool_dir))
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "closed"
    wait_for(lambda: daemon.status()["clients_connected"] == 0, timeout=20, message="the closed client gone")
    daemon.signal(signal.SIGSTOP)
    try:
        _, err = child.communicate("\n", timeout=60)  # end_run at exit: spooled, the daemon answers no one
        assert child.returncode == 0, err
    finally:
        daemon.signal(signal.SIGCONT)
    # The new client's sender may tell the run with its Hello (ActiveRun.move_to adds it, and a run
    # added while a Hello waits goes at once) before end_run queues the end and takes it back: then
    # its will rightly waits for the spool that holds the end. This waited for no will at all
    # before the sync, and timed out one time in ten.
    assert wait_until_only_spools_hold_wills(daemon)["runs_failed_for_exited_clients"] == 0
    assert cli_main(["sync", "--socket", str(socket_path), "--spool-dir", str(spool_dir)]) == 0
    assert wait_until_no_will_is_pending(daemon)["runs_failed_for_exited_clients"] == 0
    run = mlflow_run(store, run_id)
    assert run.info.status == "FINISHED"
    assert FAILURE_REASON_TAG not in run.data.tags


def test_a_run_logged_through_a_reopened_client_is_failed_when_its_process_is_killed(
    daemon: DaemonProcess, store: Path, socket_path: Path
) -> None:
    # After run.client.close(), the run's next call opens a new client: that one owns the run now.
    body = "run.client.close()\ntrackd.log_metric('loss', 5.0, step=5)\ntrackd.flush()\n" + SIGKILL_SELF
    child, run_id = start_child(store, socket_path, body)
    assert finish(child) == -signal.SIGKILL
    run = wait_for_status(store, run_id, "FAILED")
    assert FAILURE_REASON_TAG in run.data.tags and run.data.metrics["loss"] == 5.0


def test_a_run_a_live_process_owns_too_is_not_failed_when_its_other_owner_is_killed(
    daemon: DaemonProcess, store: Path, socket_path: Path
) -> None:
    # torchrun restarting a job whose rank 0 was SIGKILLed (the OOM killer): the new rank 0 attaches
    # to the shared run and owns it. The old rank 0's will failed the run under it, and the new
    # rank 0's end_run kept that failure (it keeps what another process set): a job that went on
    # and finished ended FAILED.
    first, run_id = start_child(store, socket_path, WAIT_FOR_STDIN, start_args="run_id='shared0run'", RANK="0")
    second, attached = start_child(store, socket_path, WAIT_FOR_STDIN, start_args="run_id='shared0run'", RANK="0")
    assert attached == run_id
    first.kill()
    assert finish(first) == -signal.SIGKILL
    wait_for(lambda: (s := daemon.status())["clients_connected"] == 1 and s["wills_pending"] == 0, timeout=20)
    assert mlflow_run(store, run_id).info.status == "RUNNING"
    second.communicate("\n", timeout=30)
    assert second.returncode == 0
    run = wait_for_status(store, run_id, "FINISHED")
    assert FAILURE_REASON_TAG not in run.data.tags
    assert daemon.status()["runs_failed_for_exited_clients"] == 0


def test_a_will_waits_for_a_spool_the_background_delivery_set_aside(
    daemon: DaemonProcess, store: Path, socket_path: Path
) -> None:
    # A spool the background delivery could not deliver is renamed (<id>.undeliverable.spool) and
    # left to `trackd sync`; the daemon saw its spool gone and failed the run, and the end that
    # sync then delivered from it could not undo that (it keeps a failure).
    record = "(SET_TERMINATED, run.info.run_id, 3, 1_700_000_000_000, True)"
    spool_dir = Path(os.environ["TRACKD_SPOOL_DIR"])
    before = set(spool_dir.glob("*.spool"))  # another test's leftover, in a pytest-xdist worker's order
    child, run_id = start_child(store, socket_path, SPOOL_AND_SIGKILL.format(record=record))
    assert finish(child) == -signal.SIGKILL
    (spool,) = set(spool_dir.glob("*.spool")) - before
    spool.rename(spool.with_name(spool.name.removesuffix(".spool") + ".undeliverable.spool"))
    wait_for(lambda: daemon.status()["wills_waiting"] == 1, timeout=20, message="the will waiting for the spool set aside")
    assert mlflow_run(store, run_id).info.status == "RUNNING"
    assert cli_main(["sync", "--socket", str(socket_path)]) == 0
    assert wait_until_no_will_is_pending(daemon)["runs_failed_for_exited_clients"] == 0
    run = mlflow_run(store, run_id)
    assert run.info.status == "FINISHED" and FAILURE_REASON_TAG not in run.data.tags


def test_a_daemon_stopped_while_a_will_waits_for_the_last_batch_applies_it_as_it_stops(socket_path: Path, store: Path) -> None:
    # The will of a killed process waited for its last batch to be written (or for the next check,
    # once a second); a daemon stopped then wrote the batch and exited with the will in memory, and
    # the next daemon never had it: the run stayed RUNNING for ever. A live owner's run is left to it.
    first = DaemonProcess(socket_path, "--max-age", "3600").start()  # the last batch waits an hour, or for shutdown
    body = "trackd.log_metric('loss', 9.0, step=3)\nprint('logged', flush=True)\n" + WAIT_FOR_STDIN
    try:
        alive, live_run_id = start_child(store, socket_path, WAIT_FOR_STDIN)  # first: its flush writes what waits
        killed, run_id = start_child(store, socket_path, body)
        assert killed.stdout is not None and killed.stdout.readline().strip() == "logged"
        wait_for(lambda: first.status()["backlog_records"] == 1, timeout=20, message="the last point received, not written")
        killed.kill()
        assert finish(killed) == -signal.SIGKILL
        wait_for(lambda: first.status()["wills_waiting"] == 1, timeout=20, message="the will waiting for the last batch")
        assert mlflow_run(store, run_id).info.status == "RUNNING"
    finally:
        assert first.stop() == 0
    try:
        run = mlflow_run(store, run_id)
        assert run.info.status == "FAILED" and f"process {killed.pid} " in run.data.tags[FAILURE_REASON_TAG]
        assert run.data.metrics["loss"] == 9.0
        assert mlflow_run(store, live_run_id).info.status == "RUNNING"
        second = DaemonProcess(socket_path).start()
        try:
            alive.communicate("\n", timeout=30)
            assert alive.returncode == 0
            assert FAILURE_REASON_TAG not in wait_for_status(store, live_run_id, "FINISHED").data.tags
        finally:
            assert second.stop() == 0
    finally:
        if alive.poll() is None:
            alive.kill()
            alive.communicate(timeout=30)


@SPOOLED_RECORDS
def test_a_will_waiting_for_a_spool_when_the_daemon_stops_is_applied_by_the_next_daemon(
    socket_path: Path, store: Path, record: str, status: str
) -> None:
    # The stopping daemon cannot apply it (the spool may hold the run's end), and the next daemon
    # never had it: once `trackd sync` delivered the spool, the run stayed RUNNING for ever.
    first = DaemonProcess(socket_path).start()
    try:
        child, run_id = start_child(store, socket_path, SPOOL_AND_SIGKILL.format(record=record))
        assert finish(child) == -signal.SIGKILL
        wait_for(lambda: first.status()["wills_waiting"] == 1, timeout=20, message="the will waiting for the spool")
    finally:
        assert first.stop() == 0
    assert mlflow_run(store, run_id).info.status == "RUNNING"
    second = DaemonProcess(socket_path).start()
    try:
        assert second.status()["wills_pending"] == 1
        assert cli_main(["sync", "--socket", str(socket_path)]) == 0
        assert wait_until_no_will_is_pending(second)["runs_failed_for_exited_clients"] == (status == "FAILED")
    finally:
        assert second.stop() == 0
    run = mlflow_run(store, run_id)
    assert run.info.status == status
    assert (FAILURE_REASON_TAG in run.data.tags) == (status == "FAILED")
    assert not second.paths.wills.exists()


def test_a_will_the_full_disk_refused_is_applied_once_space_returns(daemon: DaemonProcess, small_disk: Path, socket_path: Path) -> None:
    # The store refused the FAILED (disk full, read-only remount): the will was logged and dropped,
    # and the run stayed RUNNING for ever, though the daemon writes the events it held back then.
    store = small_disk / "mlruns"
    child, run_id = start_child(store, socket_path, WAIT_FOR_STDIN)
    filler = small_disk / "filler"
    try:
        fill(filler)
        child.kill()
        assert finish(child) == -signal.SIGKILL
        wait_for(lambda: "Could not mark run" in daemon.log(), timeout=20, message="the store refusing the will")
        assert mlflow_run(store, run_id).info.status == "RUNNING"
        assert daemon.status()["wills_waiting"] == 1
    finally:
        filler.unlink(missing_ok=True)
    run = wait_for_status(store, run_id, "FAILED")
    assert f"process {child.pid} " in run.data.tags[FAILURE_REASON_TAG]
    assert wait_until_no_will_is_pending(daemon)["runs_failed_for_exited_clients"] == 1


# After the prologue: a socket buffer of 64 MiB (so the kernel can hold what is sent while the
# daemon is stopped), then POINTS more points, sent; prints how many bytes the kernel holds unread.
SEND_INTO_THE_SOCKET = """
import fcntl, socket, struct, termios, time
from trackd.client._fluent import get_client
sender = get_client()._sender
sock = sender._transport._sock
try:
    sock.setsockopt(socket.SOL_SOCKET, 32, 64 << 20)  # SO_SNDBUFFORCE (CAP_NET_ADMIN)
except PermissionError:
    pass
print(sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF), flush=True)
sys.stdin.readline()  # the daemon is stopped now
for step in range(3, 3 + {points}):
    trackd.log_metric("loss", float(step), step=step)
unread = lambda: struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\\0" * 4))[0]
deadline = time.monotonic() + 60
while (sender.stats()["buffered"] or unread() < sender._ledger.window()[1]) and time.monotonic() < deadline:
    time.sleep(0.01)
print(unread(), flush=True)
""" + WAIT_FOR_STDIN


@pytest.mark.parametrize("stop", [True, False], ids=["daemon-stopped", "daemon-running"])
def test_a_process_killed_with_its_last_batches_unread_gets_them_written_and_its_run_failed(
    socket_path: Path, store: Path, stop: bool
) -> None:
    # At shutdown the daemon stopped reading every connection: a live client resends what was not
    # read, but a process killed just before had its last batches in the socket unread for good,
    # and its will was never applied: points lost, and the run RUNNING for ever. Running, the
    # daemon lost them too: the first Ack it wrote to the dead client (EPIPE) closed the connection.
    points = 100_000
    daemon = DaemonProcess(socket_path).start()
    child, run_id = start_child(store, socket_path, SEND_INTO_THE_SOCKET.format(points=points))
    try:
        assert child.stdout is not None and child.stdin is not None
        if int(child.stdout.readline()) < 32 << 20:
            pytest.skip("a socket buffer large enough needs CAP_NET_ADMIN (SO_SNDBUFFORCE)")
        wait_for(lambda: owned_runs(daemon) == 1, timeout=20, message="the run owned")
        daemon.signal(signal.SIGSTOP)
        try:
            child.stdin.write("\n")
            child.stdin.flush()
            assert int(child.stdout.readline()) > 2 * 1024 * 1024  # megabytes of batches in the socket, unread
            child.kill()
            assert finish(child) == -signal.SIGKILL
            if stop:
                daemon.signal(signal.SIGTERM)
        finally:
            daemon.signal(signal.SIGCONT)
        if not stop:
            # The running daemon fails the run (read back below, before it stops), once it wrote the
            # points. Waited for in its status: polled through MLflow, each look took 4-5 s on a
            # loaded 2-core machine (the daemon was done in 6), and 20 s of them ran out.
            assert wait_until_no_will_is_pending(daemon)["runs_failed_for_exited_clients"] == 1
            assert mlflow_run(store, run_id).info.status == "FAILED"
        assert daemon.stop() == 0, daemon.log()
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate(timeout=30)
    history = MlflowClient(tracking_uri=f"file:{store}").get_metric_history(run_id, "loss")
    assert [m.step for m in history] == list(range(3 + points))
    run = mlflow_run(store, run_id)
    assert run.info.status == "FAILED" and f"process {child.pid} " in run.data.tags[FAILURE_REASON_TAG]
