"""A spool file that holds its Hello alone holds no events, and the will of its SIGKILLed process does
not wait for it: the run is failed as if there were no spool.

The process made its spool file (the Hello written) when it gave its stalled daemon up, and could
not write its batches to it (here a file size limit, RLIMIT_FSIZE; a full disk alike): they stayed
in memory, and went with the process. The daemon's will waited while the file was not empty, so the
run stayed RUNNING until a `trackd sync` or another process's background delivery removed the file.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from helpers import Child, DaemonProcess, child_env, wait_for

from trackd.client._spool import SpoolReader

pytestmark = pytest.mark.timeout(180)

# Starts a run and flushes (its daemon knows the run and the spool file's path); once the test has
# stopped the daemon, limits the size of the files it writes to 4 KiB and logs 5,000 points: with no
# daemon, their spill makes the spool file and writes its Hello, and its batches are refused (EFBIG),
# held in memory (said on stderr). Then it waits to be killed.
OWNER = """
import os, resource, signal, sys, time, trackd
trackd.set_tracking_uri(sys.argv[1])
run = trackd.start_run(experiment_id="0")
trackd.log_metric("x", 0.0, step=0)
trackd.flush(timeout=60)
print("ready", run.info.run_id, flush=True)
while not os.path.exists(sys.argv[2]):
    time.sleep(0.02)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
for step in range(1, 5001):
    trackd.log_metric("x", float(step), step=step)
time.sleep(3600)
"""


def test_the_run_of_a_killed_process_whose_spool_holds_its_hello_alone_is_failed(tmp_path: Path, store: Path, socket_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir(mode=0o700)
    env = child_env(socket_path, TRACKD_AUTOSTART="0", TRACKD_SPOOL_DIR=str(spool_dir), TRACKD_CONNECT_TIMEOUT="0.5")
    daemon = DaemonProcess(socket_path).start()
    with Child(OWNER, [str(store), str(tmp_path / "stopped")], env) as owner:
        wait_for(lambda: owner.out or owner.process.poll() is not None, 60, message="the run")
        said = owner.out[0].split()
        assert said[:1] == ["ready"], owner.stderr()
        # The daemon keeps the will of the live process for the next one (trackd.sock.wills).
        assert daemon.stop() == 0, daemon.log()
        (tmp_path / "stopped").touch()
        wait_for(lambda: "could not spool events" in owner.stderr(), 60, message="the spool file refusing the batches")
        owner.process.kill()
    (spool,) = spool_dir.glob("*.spool")
    with SpoolReader(spool.open("rb"), spool) as reader:  # the Hello alone
        assert not list(reader.batches()) and reader.offset == spool.stat().st_size, owner.stderr()
    daemon = DaemonProcess(socket_path).start()
    try:
        runs = mlflow.MlflowClient(tracking_uri=str(store))
        # The old daemon waited for the file: the run stayed RUNNING.
        wait_for(lambda: runs.get_run(said[1]).info.status == "FAILED", timeout=60, interval=0.2, message="the run FAILED")
        assert spool.exists()
    finally:
        assert daemon.stop() == 0, daemon.log()
