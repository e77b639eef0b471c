"""A delivered spool file that cannot be deleted is never delivered again, nor added to.

The sender deletes its spool file once the daemon has written every batch in it. Where the unlink
failed (the spool folder made read-only; EIO on NFS) the file stayed whole on disk while the client
counted it empty: the unlink's error went up the sender thread, which dropped its connection
("trackd sender thread failed; retrying", a traceback), the next spill added its batches after
the delivered ones (counted from the file's first batch, so a batch found undecodable was counted
by the wrong index), and `trackd sync` after the process was gone sent them all again: a daemon
that no longer knew the client (its journal is beside the socket, a folder a reboot may empty)
wrote the delivered points twice. Now a file that cannot be deleted is emptied while still locked
(said once); and one that could be neither is emptied when the client opens it to spool again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from helpers import DaemonProcess, child_env, short_socket_path
from test_metric_file_refused_alone import WITHOUT_PERMISSION_OVERRIDE
from test_slow_spool_disk_strace import _slowed

pytestmark = pytest.mark.timeout(180)

# No daemon: spools ten points, makes the spool folder read-only (its files stay writable) and
# says "ready" with the run's id. Once told, a daemon answers: it flushes and says whether the
# spool file is still there once it is delivered. Once told again, no daemon answers: it spools ten
# more, and exits as if killed (its spool left for `trackd sync`).
SPOOL_DELIVER_SPOOL = """
import os, subprocess, sys, threading, time, trackd
from pathlib import Path
client = trackd.Client(sys.argv[1])
run_id = client.create_run("0").info.run_id
for step in range(10):
    client.log_metric(run_id, "x", float(step), step=step)
while not client.stats()["spooled"]:
    time.sleep(0.01)
spool = Path(os.environ["TRACKD_SPOOL_DIR"]) / (str(client.stats()["client_id"]) + ".spool")
spool.parent.chmod(0o500)
{slowed}
print("ready", run_id, flush=True)
sys.stdin.readline()
client.flush(timeout=60)
print("delivered", spool.exists(), flush=True)
sys.stdin.readline()
for step in range(10, 20):
    client.log_metric(run_id, "x", float(step), step=step)
while client.stats()["spooled"] < 10:
    time.sleep(0.01)
print("spooled", flush=True)
os._exit(0)
"""


def _deliver_spool_kill_sync(tmp_path: Path, store: Path, slowed: str = "") -> tuple[list[int], str]:
    """Run SPOOL_DELIVER_SPOOL (as a user file modes refuse: root without CAP_DAC_OVERRIDE), then
    `trackd sync` its spool to a daemon that never knew it; the steps in the store, and its stderr."""
    wrapper: tuple[str, ...] = ()
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("needs setpriv to run as root without overriding file permissions")
        wrapper = WITHOUT_PERMISSION_OVERRIDE
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir(mode=0o700)
    first = short_socket_path()
    env = child_env(first, TRACKD_AUTOSTART="0", TRACKD_SPOOL_DIR=str(spool_dir), TRACKD_CONNECT_TIMEOUT="0.2")
    child = subprocess.Popen(
        [*wrapper, sys.executable, "-c", SPOOL_DELIVER_SPOOL.format(slowed=slowed), str(store)], env=env, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    daemon = DaemonProcess(first)
    try:
        assert child.stdout is not None and child.stdin is not None
        said = child.stdout.readline().split()
        if said == ["no-strace"]:
            pytest.skip("strace cannot attach to a thread of the child here (ptrace not allowed)")
        assert said[:1] == ["ready"], child.communicate(timeout=30)[1][-3000:]
        run_id = said[1]
        daemon.start()
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.stdout.readline() == "delivered True\n"  # left on disk: the folder is read-only
        assert daemon.stop() == 0
        child.stdin.write("\n")
        child.stdin.flush()
        out, err = child.communicate(timeout=60)
        assert out == "spooled\n", err[-3000:]
    finally:
        child.kill()  # nothing once it has exited
        child.wait()
        if daemon.process is not None and daemon.process.poll() is None:
            daemon.stop()
    spool_dir.chmod(0o700)
    # A daemon that never knew the client (its socket's folder emptied by a reboot, say).
    later = DaemonProcess(short_socket_path()).start()
    try:
        synced = subprocess.run(
            [sys.executable, "-m", "trackd", "sync"], env=child_env(later.paths.socket, TRACKD_SPOOL_DIR=str(spool_dir)),
            capture_output=True, text=True, timeout=60,
        )
        assert synced.returncode == 0, synced.stderr[-3000:]
    finally:
        assert later.stop() == 0
    history = mlflow.MlflowClient(tracking_uri=str(store)).get_metric_history(run_id, "x")
    return sorted(metric.step for metric in history), err


def test_a_delivered_spool_file_a_read_only_folder_keeps_is_emptied(tmp_path: Path, store: Path) -> None:
    steps, err = _deliver_spool_kill_sync(tmp_path, store)
    # Each point once: the old code's sync wrote steps 0 to 9 a second time, from the file left whole.
    assert steps == list(range(20))
    assert "sender thread failed" not in err, err
    assert err.count("was delivered but could not be removed (Permission denied); it is left empty.") == 1, err


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_a_delivered_spool_file_that_cannot_be_emptied_either_is_emptied_before_it_is_added_to(
    tmp_path: Path, store: Path,
) -> None:
    # Its emptying fails too (EIO, from strace), once: the next spill's open empties it.
    steps, err = _deliver_spool_kill_sync(tmp_path, store, slowed=_slowed("ftruncate", "error=EIO:when=1"))
    assert steps == list(range(20))
    assert "sender thread failed" not in err, err
    assert err.count("could not be removed (Permission denied) nor emptied (Input/output error)") == 1, err
