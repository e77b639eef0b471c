"""A media folder of a killed process is kept while the daemon still holds a record that copies from it.

A process killed (SIGKILL) after sending a large artifact leaves no spool and no lock: its media
folder looks orphaned. When the daemon still holds the record (its store's disk full: it keeps the
batch until the store takes writes), a delivery or `trackd sync` removed the folder, and once the
disk had room the artifact was refused as "cannot be read": lost to trackd's own cleanup. Now
the folder's owner file names the process and its daemon, which is asked first.

Real processes: a real daemon, a child killed by a real SIGKILL, the real `trackd sync`, a real
full tmpfs, MLflow reading the store back.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import DaemonProcess, child_env, fill, mounted_tmpfs, wait_for

pytestmark = pytest.mark.timeout(180)

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402

MIB = 1024 * 1024

# argv: store, source, how it names the socket. Creates its run (written), prints its id and pid,
# and at a line on stdin logs the 9 MiB source (copied at the call into its media folder, sent
# by path), then waits to be killed. "relative": ClientConfig(socket_path="d.sock"), run in the
# socket's folder; "environment": TRACKD_SOCKET.
LOGS_THEN_WAITS = """
import os, sys, time, trackd
from pathlib import Path
relative = sys.argv[3] == "relative"
config = trackd.ClientConfig(socket_path=Path("d.sock"), autostart=False) if relative else None
client = trackd.Client(sys.argv[1], config=config)
run_id = client.create_run("0").info.run_id
client.flush()
print(run_id, os.getpid(), flush=True)
sys.stdin.readline()
client.log_artifact(run_id, sys.argv[2])
print("logged", flush=True)
time.sleep(600)
"""


def _sync(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "trackd", "sync"], env=env, capture_output=True, text=True, timeout=60, cwd="/")
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def _connected(status: dict[str, Any], pid: int) -> bool:
    return any(c["pid"] == pid and c.get("connected") for c in status["clients"])


def _held(status: dict[str, Any], pid: int) -> bool:
    return any(c["pid"] == pid and c["received_seq"] > c["written_seq"] for c in status["clients"])


@pytest.fixture
def store_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs for the store with room for the artifact (32 MiB) once its filler is gone."""
    (tmp_path / "disk").mkdir()
    with mounted_tmpfs(tmp_path / "disk", "size=32m"):
        yield tmp_path / "disk"


@pytest.mark.parametrize("socket_named", ["environment", "relative"])
def test_trackd_sync_keeps_a_killed_process_media_folder_until_the_daemon_has_copied_from_it(
    store_disk: Path, daemon: DaemonProcess, tmp_path: Path, socket_named: str
) -> None:
    # This used to remove the folder at the sync, and the artifact was then refused: "Invalid
    # source for artifact 'model.bin' ...: '.../<id>.media/trackd-artifact-.../0' cannot be read".
    # With a relative socket path the owner file named "d.sock", which the sync (run elsewhere)
    # found no daemon on: the folder went all the same.
    store, spool, source, filler = store_disk / "mlruns", tmp_path / "spool", tmp_path / "model.bin", store_disk / "filler"
    source.write_bytes(b"m" * (9 * MIB))
    env = child_env(daemon.paths.socket, TRACKD_AUTOSTART="0", TRACKD_SPOOL_DIR=str(spool))
    child = subprocess.Popen(
        [sys.executable, "-c", LOGS_THEN_WAITS, str(store), str(source), socket_named], env=env, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=daemon.paths.socket.parent,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        run_id, pid = child.stdout.readline().split()
        fill(filler)
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline() == "logged\n"
        wait_for(lambda: _held(daemon.status(), int(pid)), 30, message="the daemon to hold the artifact's batch")
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=30)
        [media] = spool.glob("*.media")
        sync = _sync(env)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate(timeout=30)
        filler.unlink()
    wait_for(lambda: daemon.status()["backlog_records"] == 0, 60, message="the daemon to write what it held")
    assert Path(MlflowClient(str(store)).download_artifacts(run_id, "model.bin")).read_bytes() == b"m" * (9 * MIB)
    assert f"{media}: kept, " in sync.stdout and "has not written everything its process" in sync.stdout, sync.stdout
    # The daemon reads the killed process's end once it reads on after the held batch: until then it
    # lists the process as connected, and a sync keeps the folder (1 run in 10 under -n 2).
    wait_for(lambda: not _connected(daemon.status(), int(pid)), 60, message="the daemon to see the killed process gone")
    assert f"{media}: removed, " in _sync(env).stdout  # copied now: the next sync removes it
    assert not media.exists()


def test_a_killed_process_media_folder_goes_once_no_daemon_runs_on_the_socket_it_used(
    daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    # Its daemon is gone, and the batches it held with it: nothing will copy from the folder.
    spool = tmp_path / "spool"
    media = spool / "0123456789abcdef.media"
    (media / "trackd-artifact-x").mkdir(parents=True)
    gone = tmp_path / "gone" / "d.sock"
    owner = {"pid": os.getpid(), "host": socket.gethostname(), "socket": str(gone)}
    (media / "owner").write_text(json.dumps(owner))
    sync = _sync(child_env(daemon.paths.socket, TRACKD_AUTOSTART="0", TRACKD_SPOOL_DIR=str(spool)))
    assert f"{media}: removed, " in sync.stdout, sync.stdout
    assert not media.exists()


def test_a_media_folder_that_names_no_daemon_goes_only_once_unchanged_for_a_day(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    # Made by an older trackd (no owner file): it used to go at once, whatever its process had sent.
    spool = tmp_path / "spool"
    media = spool / "0123456789abcdef.media"
    folder = media / "trackd-artifact-x"
    folder.mkdir(parents=True)
    env = child_env(daemon.paths.socket, TRACKD_AUTOSTART="0", TRACKD_SPOOL_DIR=str(spool))
    assert f"{media}: kept, " in _sync(env).stdout
    day_ago = time.time() - 25 * 3600
    for path in (folder, media):
        os.utime(path, (day_ago, day_ago))
    assert f"{media}: removed, " in _sync(env).stdout
    assert not media.exists()
