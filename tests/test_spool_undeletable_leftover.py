"""An empty spool file that cannot be removed holds nothing, and nothing waits for it or fails on it.

A process whose spool folder is read-only empties its delivered spool file instead of deleting it
(``test_spool_undeletable.py``). That empty file was taken for a spool waiting to be delivered:
SIGKILLed, the process's run stayed RUNNING for ever (the daemon's will waited while the file
existed) and ``trackd daemon status`` said to run ``trackd sync``; each ``trackd sync`` failed on it
("not delivered: [Errno 13] Permission denied", exit 1) and each trackd process's background
delivery warned it could not deliver it "nor rename it". And the warning that such a file was left
on disk was said once per sender, not once per process as docs/guarantees.md (6e) says.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from helpers import DaemonProcess, child_env, short_socket_path, wait_for
from test_metric_file_refused_alone import WITHOUT_PERMISSION_OVERRIDE

pytestmark = pytest.mark.timeout(180)

# No daemon: starts a run, spools ten points, makes the spool folder read-only (its files stay
# writable) and says "ready" with the run's id. Once told, a daemon answers: it flushes, says the
# size of its spool file (left on disk, emptied), and waits to be killed.
OWNER = """
import os, sys, time, trackd
from pathlib import Path
from trackd.client._fluent import get_client
trackd.set_tracking_uri(sys.argv[1])
run = trackd.start_run(experiment_id="0")
for step in range(10):
    trackd.log_metric("x", float(step), step=step)
client = get_client()
while not client.stats()["spooled"]:
    time.sleep(0.01)
spool = Path(os.environ["TRACKD_SPOOL_DIR"]) / (str(client.stats()["client_id"]) + ".spool")
spool.parent.chmod(0o500)
print("ready", run.info.run_id, flush=True)
sys.stdin.readline()
trackd.flush(timeout=60)
print("delivered", spool.stat().st_size, flush=True)
time.sleep(3600)
"""

# Another process on the same spool folder: connects and runs past the background delivery's delay.
OTHER = """
import sys, time, trackd
from trackd.client._delivery import ORPHAN_DELIVERY_DELAY
client = trackd.Client(sys.argv[1])
client.log_metric(client.create_run("0").info.run_id, "y", 1.0)
client.flush(timeout=60)
time.sleep(ORPHAN_DELIVERY_DELAY + 2)
client.flush(timeout=60)
"""

# Two stores (a sender each) spool while no daemon answers; the folder made read-only, a daemon
# answers and both flush: each delivered spool file is left on disk, emptied.
TWO_SENDERS = """
import os, sys, time, trackd
from pathlib import Path
clients = [trackd.Client(root) for root in sys.argv[1:3]]
for client in clients:
    client.log_metric(client.create_run("0").info.run_id, "x", 1.0)
while not all(client.stats()["spooled"] for client in clients):
    time.sleep(0.01)
Path(os.environ["TRACKD_SPOOL_DIR"]).chmod(0o500)
print("ready", flush=True)
sys.stdin.readline()
for client in clients:
    client.flush(timeout=60)
print("delivered", flush=True)
"""


def _wrapper() -> tuple[str, ...]:
    """Run as a user file modes refuse: root without CAP_DAC_OVERRIDE."""
    if os.geteuid() != 0:
        return ()
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv to run as root without overriding file permissions")
    return WITHOUT_PERMISSION_OVERRIDE


def _started(
    tmp_path: Path, code: str, *args: str,
) -> tuple[tuple[str, ...], Path, dict[str, str], subprocess.Popen[str], DaemonProcess]:
    """``code`` running as a user file modes refuse, no daemon answering it yet (the one returned
    is not started); the wrapper, the spool folder, the environment, the process and the daemon."""
    wrapper = _wrapper()
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir(mode=0o700)
    sock = short_socket_path()
    env = child_env(sock, TRACKD_AUTOSTART="0", TRACKD_SPOOL_DIR=str(spool_dir), TRACKD_CONNECT_TIMEOUT="0.2")
    process = subprocess.Popen(
        [*wrapper, sys.executable, "-c", code, *args], env=env, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    return wrapper, spool_dir, env, process, DaemonProcess(sock)


def _clean_up(process: subprocess.Popen[str], spool_dir: Path, daemon: DaemonProcess) -> None:
    process.kill()  # nothing once it has exited
    process.communicate(timeout=30)
    spool_dir.chmod(0o700)
    if daemon.process is not None and daemon.process.poll() is None:
        assert daemon.stop() == 0


@pytest.fixture
def killed_owner(tmp_path: Path, store: Path) -> Iterator[tuple[str, dict[str, str], tuple[str, ...]]]:
    """OWNER run as a user file modes refuse, and SIGKILLed once its delivered spool file is left
    empty; its run's id, the environment of a process beside it, and the wrapper to run it as that
    user. The daemon runs until the test's end."""
    wrapper, spool_dir, env, owner, daemon = _started(tmp_path, OWNER, str(store))
    try:
        assert owner.stdout is not None and owner.stdin is not None
        said = owner.stdout.readline().split()
        assert said[:1] == ["ready"], owner.communicate(timeout=30)[1][-3000:]
        daemon.start()
        owner.stdin.write("\n")
        owner.stdin.flush()
        assert owner.stdout.readline() == "delivered 0\n"  # left on disk, empty: the folder is read-only
        owner.send_signal(signal.SIGKILL)
        owner.communicate(timeout=30)
        yield said[1], env, wrapper
    finally:
        _clean_up(owner, spool_dir, daemon)


def test_the_run_of_a_killed_process_whose_spool_is_left_empty_is_failed(
    killed_owner: tuple[str, dict[str, str], tuple[str, ...]], store: Path,
) -> None:
    run_id, env, _ = killed_owner
    runs = mlflow.MlflowClient(tracking_uri=str(store))
    # The old daemon waited for the empty file for ever: the run stayed RUNNING.
    wait_for(lambda: runs.get_run(run_id).info.status == "FAILED", timeout=60, interval=0.2, message="the run FAILED")
    assert sorted(metric.step for metric in runs.get_metric_history(run_id, "x")) == list(range(10))
    status = subprocess.run(
        [sys.executable, "-m", "trackd", "daemon", "status"], env=env, capture_output=True, text=True, timeout=60,
    )
    assert status.returncode == 0, status.stderr
    assert "run `trackd sync`" not in status.stdout, status.stdout
    assert "1 empty file in" in status.stdout, status.stdout


def test_an_empty_spool_file_that_cannot_be_removed_is_not_a_failure_to_deliver(
    killed_owner: tuple[str, dict[str, str], tuple[str, ...]], tmp_path: Path,
) -> None:
    _, env, wrapper = killed_owner
    other = subprocess.run(
        [*wrapper, sys.executable, "-c", OTHER, str(tmp_path / "other")], env=env, capture_output=True, text=True, timeout=60,
    )
    assert other.returncode == 0, other.stderr[-3000:]
    # The old background delivery: "could not deliver the spool ... of an exited process ... nor rename it".
    assert "spool" not in other.stderr, other.stderr
    for _ in range(2):  # the old sync failed on it every time: "not delivered: [Errno 13] Permission denied"
        synced = subprocess.run(
            [*wrapper, sys.executable, "-m", "trackd", "sync"], env=env, capture_output=True, text=True, timeout=60,
        )
        assert (synced.returncode, synced.stderr) == (0, ""), synced.stdout + synced.stderr
        assert synced.stdout.count("empty; could not be removed (Permission denied)") == 1, synced.stdout


def test_a_delivered_spool_file_left_on_disk_is_said_once_per_process(tmp_path: Path) -> None:
    _, spool_dir, _, child, daemon = _started(tmp_path, TWO_SENDERS, str(tmp_path / "one"), str(tmp_path / "two"))
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline() == "ready\n", child.communicate(timeout=30)[1][-3000:]
        daemon.start()
        out, err = child.communicate("\n", timeout=60)
        assert out == "delivered\n", err[-3000:]
        assert len(list(spool_dir.glob("*.spool"))) == 2  # both left on disk, emptied
        # Once per sender, the old code said it twice.
        assert err.count("was delivered but could not be removed (Permission denied); it is left empty.") == 1, err
    finally:
        _clean_up(child, spool_dir, daemon)



def test_a_spool_trackd_sync_delivers_but_cannot_remove_is_emptied(tmp_path: Path, store: Path) -> None:
    wrapper, spool_dir, env, owner, daemon = _started(tmp_path, OWNER, str(store))
    try:
        assert owner.stdout is not None
        said = owner.stdout.readline().split()
        assert said[:1] == ["ready"], owner.communicate(timeout=30)[1][-3000:]
        owner.send_signal(signal.SIGKILL)  # its spool left whole, for `trackd sync`
        owner.communicate(timeout=30)
        daemon.start()
        shown = []
        for _ in range(2):  # the old sync failed each time, "not delivered: [Errno 13] Permission denied"
            synced = subprocess.run(
                [*wrapper, sys.executable, "-m", "trackd", "sync"], env=env, capture_output=True, text=True, timeout=60,
            )
            assert (synced.returncode, synced.stderr) == (0, ""), synced.stdout + synced.stderr
            shown.append(synced.stdout)
        assert "could not be removed (Permission denied); it is left empty" in shown[0], shown[0]
        assert "empty; could not be removed (Permission denied)" in shown[1], shown[1]
        runs = mlflow.MlflowClient(tracking_uri=str(store))
        assert sorted(metric.step for metric in runs.get_metric_history(said[1], "x")) == list(range(10))
        # Its will came with the spool, and waits for no empty file.
        wait_for(lambda: runs.get_run(said[1]).info.status == "FAILED", timeout=60, interval=0.2, message="the run FAILED")
    finally:
        _clean_up(owner, spool_dir, daemon)
