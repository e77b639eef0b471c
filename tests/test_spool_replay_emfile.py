"""A spool file that cannot be read back for a moment (the process is out of file descriptors when
a daemon answers again) is kept and resent later, never deleted as lost: the reconnect's socket took
the last descriptor of a process near its RLIMIT_NOFILE, EMFILE on opening the spool file deleted
it, and flush() said its 1001 events were lost."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import Child, DaemonProcess, child_env, wait_for
from mlflow import MlflowClient

# Spools POINTS with no daemon, then uses up every descriptor but one (RLIMIT_NOFILE lowered to 256)
# and waits for the file "free" in its flag folder: with "flush" it gives its descriptors back and
# flushes; with "close" it closes the client still without them.
SPOOLER = """
import os, resource, sys, time, trackd
store, flags, mode = sys.argv[1], sys.argv[2], sys.argv[3]
client = trackd.Client(store)
run_id = client.create_run("0").info.run_id
for step in range(POINTS):
    client.log_metric(run_id, "x", float(step), step=step)
while client.stats()["spooled"] < POINTS:
    time.sleep(0.01)
print("run", run_id, flush=True)
resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
fillers = []
try:
    while True:
        fillers.append(os.open(os.devnull, os.O_RDONLY))
except OSError:
    pass
os.close(fillers.pop())  # one left: the reconnect's socket takes it
print("filled", flush=True)
while not os.path.exists(os.path.join(flags, "free")):
    time.sleep(0.02)
if mode == "flush":
    for fd in fillers:
        os.close(fd)
    try:
        client.flush(timeout=60)
        print("flushed", flush=True)
    except Exception as exc:
        print("flush raised", type(exc).__name__, exc, flush=True)
client.close()
print("closed", flush=True)
""".replace("POINTS", "1000")


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    return tmp_path / "mlruns"


@pytest.fixture
def started(socket_path: Path) -> Iterator[list[DaemonProcess]]:
    daemons: list[DaemonProcess] = []
    yield daemons
    for daemon in daemons:
        assert daemon.stop() == 0, daemon.log()


def _spool_then_starve(socket_path: Path, store: Path, tmp_path: Path, daemons: list[DaemonProcess], mode: str) -> tuple[Child, str]:
    """The child, once a daemon answered it while it had no descriptor for the spool file, with its run id."""
    env = child_env(
        socket_path, TRACKD_SPOOL_DIR=str(tmp_path / "spool"), TRACKD_AUTOSTART="0", TRACKD_CONNECT_TIMEOUT="0.5",
        TRACKD_TRACKING_URI=str(store),
    )
    child = Child(SPOOLER, [str(store), str(tmp_path), mode], env)
    wait_for(lambda: "filled" in child.out or child.process.poll() is not None, 60, message="spooled and filled")
    assert "filled" in child.out, child.stderr()
    run_id = next(line.split()[1] for line in child.out if line.startswith("run "))
    daemons.append(DaemonProcess(socket_path).start())
    # The reconnect happened: the old code said "reconnected" after deleting the file, the new one
    # that it could not read it back for now.
    wait_for(lambda: any("reconnected" in line or "read spool file" in line for line in child.err), 60, message="a reconnect")
    (tmp_path / "free").touch()
    assert child.wait(120) == 0, child.stderr()
    return child, run_id


def _steps(store: Path, run_id: str) -> list[int]:
    return sorted(m.step for m in MlflowClient(str(store)).get_metric_history(run_id, "x"))


@pytest.mark.timeout(240)
def test_spool_file_unreadable_for_lack_of_descriptors_is_resent_once_they_are_back(
    socket_path: Path, store: Path, tmp_path: Path, started: list[DaemonProcess],
) -> None:
    child, run_id = _spool_then_starve(socket_path, store, tmp_path, started, "flush")
    assert "flushed" in child.out, (child.out, child.stderr())
    assert "lost" not in child.stderr(), child.stderr()
    assert _steps(store, run_id) == list(range(1000))
    assert not list((tmp_path / "spool").glob("*.spool"))


@pytest.mark.timeout(240)
def test_close_without_descriptors_leaves_the_spool_file_for_trackd_sync(
    socket_path: Path, store: Path, tmp_path: Path, started: list[DaemonProcess],
) -> None:
    child, run_id = _spool_then_starve(socket_path, store, tmp_path, started, "close")
    err = child.stderr()
    assert "lost" not in err and "spooled to" in err, err
    assert len(list((tmp_path / "spool").glob("*.spool"))) == 1, err
    sync = subprocess.run(
        [sys.executable, "-m", "trackd", "sync"], env=child_env(socket_path, TRACKD_SPOOL_DIR=str(tmp_path / "spool")),
        capture_output=True, text=True, timeout=120,
    )
    assert sync.returncode == 0, sync.stderr
    assert _steps(store, run_id) == list(range(1000))
