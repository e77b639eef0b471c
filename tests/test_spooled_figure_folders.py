"""A large figure's temporary folder (``log_figure`` over 8 MiB: the daemon copies the file by path)
is removed once the daemon has copied it, also when the record went to the spool and a later
process, or ``trackd sync``, delivers it; and never before that copy.

Real processes throughout: a child logs the figure with no daemon (its record is spooled), exits;
a real daemon then takes the spool, MLflow reads the figure back, and the disk is looked at.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import DaemonProcess, child_env, wait_for

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402

FIGURE_SIZE = 9 * 1024 * 1024  # over MAX_INLINE_ARTIFACT_SIZE: sent by path

# What log_figure looks for in a matplotlib figure (savefig), saving a file sent by path.
FIGURE = f"""
class Figure:
    def savefig(self, path, **kwargs):
        with open(path, "wb") as file:
            file.write(b"P" * {FIGURE_SIZE})
"""

# argv: store; logs one large figure with no daemon (spooled at exit), prints its run id.
LOG_FIGURE = f"""
import sys, trackd
{FIGURE}
trackd.set_tracking_uri(sys.argv[1])
with trackd.start_run() as run:
    trackd.log_figure(Figure(), "plots/big.png")
print(run.info.run_id, flush=True)
"""

# argv: store; connects, then stays 4 s: its background delivery takes the other process's spool.
CONNECT_AND_STAY = """
import sys, time, trackd
trackd.set_tracking_uri(sys.argv[1])
with trackd.start_run():
    trackd.log_metric("x", 1.0)
    trackd.flush()
    time.sleep(4.0)
"""


def _leftovers(*folders: Path) -> list[Path]:
    """The figure folders and files trackd left anywhere under ``folders``."""
    return [path for folder in folders for path in folder.rglob("*") if "trackd-artifact-" in path.name or path.name == "big.png"]


def _spool_a_figure(tmp_path: Path, store: Path) -> tuple[str, dict[str, str]]:
    """A child logs a large figure while no daemon answers and exits: the record is in its spool."""
    tmp, spool = tmp_path / "tmp", tmp_path / "spool"
    tmp.mkdir()
    env = child_env(
        tmp_path / "none" / "d.sock", TRACKD_AUTOSTART="0", TRACKD_SPOOL_DIR=str(spool), TMPDIR=str(tmp),
        TRACKD_CONNECT_TIMEOUT="1", TRACKD_EXIT_TIMEOUT="1",
    )
    result = subprocess.run([sys.executable, "-c", LOG_FIGURE, str(store)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert list(spool.glob("*.spool")), result.stderr
    # The figure waits on disk for its spool's deliverer: the daemon has not copied it.
    assert _leftovers(tmp, spool), "the spooled figure's file is gone before the daemon copied it"
    return result.stdout.split()[-1], env


def _figure_in_store(store: Path, run_id: str) -> bytes:
    client = MlflowClient(str(store))
    assert [(info.path, info.file_size) for info in client.list_artifacts(run_id, "plots")] == [("plots/big.png", FIGURE_SIZE)]
    return (store / "0" / run_id / "artifacts" / "plots" / "big.png").read_bytes()


def test_trackd_sync_removes_a_spooled_figures_folder_once_the_daemon_copied_it(tmp_path: Path, store: Path, socket_path: Path) -> None:
    # This used to leave /tmp/trackd-artifact-*/big.png (9 MiB) for ever after the spool was
    # delivered: nothing but the exited process knew it was temporary.
    run_id, env = _spool_a_figure(tmp_path, store)
    daemon = DaemonProcess(socket_path).start()
    try:
        env["TRACKD_SOCKET"] = str(socket_path)
        sync = subprocess.run([sys.executable, "-m", "trackd", "sync"], env=env, capture_output=True, text=True, timeout=60)
        assert sync.returncode == 0, sync.stdout + sync.stderr
        assert _figure_in_store(store, run_id) == b"P" * FIGURE_SIZE
        assert _leftovers(tmp_path / "tmp", tmp_path / "spool") == []
    finally:
        assert daemon.stop() == 0, daemon.log()


def test_a_later_process_removes_a_spooled_figures_folder_with_the_spool_it_delivers(
    tmp_path: Path, store: Path, socket_path: Path
) -> None:
    run_id, env = _spool_a_figure(tmp_path, store)
    daemon = DaemonProcess(socket_path).start()
    try:
        env["TRACKD_SOCKET"] = str(socket_path)
        later = subprocess.run([sys.executable, "-c", CONNECT_AND_STAY, str(store)], env=env, capture_output=True, text=True, timeout=60)
        assert later.returncode == 0, later.stderr
        wait_for(lambda: not list((tmp_path / "spool").glob("*.spool")), message="the spool to be delivered")
        assert _figure_in_store(store, run_id) == b"P" * FIGURE_SIZE
        assert _leftovers(tmp_path / "tmp", tmp_path / "spool") == []
    finally:
        assert daemon.stop() == 0, daemon.log()


# argv: store; the daemon is down at the first figure (its flush gives up: spooled), then back
# (the test starts it on "go"): the process delivers its spool itself and logs a second figure.
OUTAGE_THEN_BACK = f"""
import sys, trackd
{FIGURE}
trackd.set_tracking_uri(sys.argv[1])
run = trackd.start_run()
trackd.log_figure(Figure(), "plots/first.png")
try:
    trackd.flush(timeout=2)
except (trackd.DaemonUnavailable, trackd.FlushTimeout):
    pass
print("spooled", run.info.run_id, flush=True)
sys.stdin.readline()
trackd.log_figure(Figure(), "plots/second.png")
trackd.flush()
trackd.log_figure(Figure(), "plots/third.png")  # its barrier removes what the flush wrote
trackd.end_run()
print("done", flush=True)
"""


def test_a_process_removes_its_spooled_figures_folder_once_it_delivered_its_spool_itself(
    tmp_path: Path, store: Path, socket_path: Path
) -> None:
    # The first figure's barrier failed when the flush gave the daemon up; its folder was dropped
    # from the list of folders to remove, and stayed after the process delivered its spool.
    tmp, spool = tmp_path / "tmp", tmp_path / "spool"
    tmp.mkdir()
    env = child_env(socket_path, TRACKD_AUTOSTART="0", TRACKD_SPOOL_DIR=str(spool), TMPDIR=str(tmp), TRACKD_CONNECT_TIMEOUT="1")
    with subprocess.Popen(
        [sys.executable, "-c", OUTAGE_THEN_BACK, str(store)], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    ) as child:
        assert child.stdout is not None and child.stdin is not None and child.stderr is not None
        try:
            line = child.stdout.readline()
            assert line.startswith("spooled"), line + child.stderr.read()
            run_id = line.split()[1]
            daemon = DaemonProcess(socket_path).start()
            try:
                child.stdin.write("go\n")
                child.stdin.flush()
                assert child.wait(timeout=60) == 0, child.stderr.read()
                artifacts = store / "0" / run_id / "artifacts" / "plots"
                assert sorted(path.name for path in artifacts.iterdir()) == ["first.png", "second.png", "third.png"]
                assert _leftovers(tmp, spool) == []
            finally:
                assert daemon.stop() == 0, daemon.log()
        finally:
            if child.poll() is None:
                child.kill()


# argv: store; logs a large figure through the daemon, says so, then lives until stdin closes.
LOG_AND_LIVE = f"""
import sys, trackd
{FIGURE}
trackd.set_tracking_uri(sys.argv[1])
trackd.start_run()
trackd.log_figure(Figure(), "plots/big.png")
print("logged", flush=True)
sys.stdin.read()
"""


def test_trackd_sync_removes_media_folders_no_spool_waits_for_but_not_a_live_processs(
    tmp_path: Path, store: Path, daemon: DaemonProcess
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o700)
    # An exited process's, whose figure was written (or lost): no spool file waits for it.
    orphan = spool / ("f" * 32 + ".media") / "trackd-artifact-x"
    orphan.mkdir(parents=True)
    (orphan / "big.png").write_bytes(b"P")
    exited = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    owner = {"pid": int(exited.stdout), "host": socket.gethostname(), "socket": str(daemon.paths.socket)}
    (orphan.parent / "owner").write_text(json.dumps(owner))  # a daemon that holds nothing of it
    env = child_env(daemon.paths.socket, TRACKD_SPOOL_DIR=str(spool), TRACKD_AUTOSTART="0")
    with subprocess.Popen(
        [sys.executable, "-c", LOG_AND_LIVE, str(store)], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    ) as live:
        assert live.stdout is not None and live.stdin is not None
        assert live.stdout.readline() == "logged\n"
        held = [path for path in spool.glob("*.media") if path != orphan.parent]
        assert len(held) == 1
        sync = subprocess.run([sys.executable, "-m", "trackd", "sync"], env=env, capture_output=True, text=True, timeout=60)
        assert sync.returncode == 0, sync.stderr
        assert f"{orphan.parent}: removed" in sync.stdout, sync.stdout
        assert not orphan.parent.exists()
        assert held[0].is_dir(), "the live process's media folder was removed from under it"
        live.stdin.close()
        assert live.wait(timeout=60) == 0
    # The live process removed its own at exit, once written, its media folder too.
    assert _leftovers(spool) == [] and list(spool.glob("*.media")) == []
