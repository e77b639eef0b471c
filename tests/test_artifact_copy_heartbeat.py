"""A daemon copying a large artifact from a slow disk tells the process that logged it that it is
at work, so that process, waiting for room under TRACKD_ON_FULL=block while no Ack can come until
the copy is done, does not give a healthy daemon up as stopped and spool everything it logs.

The slow disk is real: the daemon runs in a blkio cgroup that throttles its reads of the source's
device, and the source is dropped from the page cache first. Points read back with MLflow.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import DaemonProcess, child_env, short_socket_path

BLKIO = Path("/sys/fs/cgroup/blkio")
MIB = 1024 * 1024
# 64 MiB read at 16 MiB/s: a copy of ~4 s, four times the client's TRACKD_CONNECT_TIMEOUT below.
SOURCE_SIZE = 64 * MIB
READ_BYTES_PER_SECOND = 16 * MIB
POINTS = 300_000

# Logs a point (flushed), then the file argv[1] by path, then POINTS points as fast as it can:
# more than its unacknowledged window and buffer hold, so its calls wait for the copy. Prints
# the run id, its stats, and its flush's word.
LOGGER = f"""
import json, sys, trackd
client = trackd.Client()
run_id = client.create_run("0").info.run_id
client.log_metric(run_id, "x", 0.0, step=0)
client.flush(timeout=30)
client.log_artifact(run_id, sys.argv[1])
for step in range(1, {POINTS}):
    client.log_metric(run_id, "x", float(step), step=step)
stats = client.stats()
client.flush(timeout=120)
client.close()
print(run_id, json.dumps(stats), flush=True)
"""

READ_BACK = """
import json, sys
from mlflow import MlflowClient
client = MlflowClient(sys.argv[1])
steps = sorted(metric.step for metric in client.get_metric_history(sys.argv[2], "x"))
print(json.dumps([steps == list(range(int(sys.argv[3]))), [a.path for a in client.list_artifacts(sys.argv[2])]]))
"""


@contextlib.contextmanager
def _slow_reads(device: int) -> Iterator[Path]:
    """A blkio cgroup whose processes read ``device`` at READ_BYTES_PER_SECOND; skips where none can be made."""
    group = BLKIO / f"trackd-test-{os.getpid()}"
    try:
        group.mkdir()
        (group / "blkio.throttle.read_bps_device").write_text(f"{os.major(device)}:{os.minor(device)} {READ_BYTES_PER_SECOND}\n")
    except OSError as exc:
        with contextlib.suppress(OSError):
            group.rmdir()
        pytest.skip(f"cannot throttle reads here (needs root and cgroup v1 blkio on a block device): {exc}")
    try:
        yield group
    finally:
        group.rmdir()  # its daemon has exited


def _uncached_file(path: Path, size: int) -> None:
    """A file of ``size`` random bytes on disk and not in the page cache, so reading it reads the disk."""
    with path.open("wb") as out:
        for _ in range(size // MIB):
            out.write(os.urandom(MIB))
        out.flush()
        os.fsync(out.fileno())
        os.posix_fadvise(out.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


@pytest.mark.timeout(240)
def test_a_slow_artifact_copy_does_not_make_its_process_give_the_daemon_up(store: Path, tmp_path: Path) -> None:
    source = tmp_path / "checkpoint.bin"
    _uncached_file(source, SOURCE_SIZE)
    if os.major(source.stat().st_dev) == 0:
        pytest.skip("the test folder is on no block device (tmpfs, overlay): its reads cannot be throttled")
    with _slow_reads(source.stat().st_dev) as group:
        daemon = DaemonProcess(
            short_socket_path(), preamble=f"import os\nopen({str(group / 'cgroup.procs')!r}, 'w').write(str(os.getpid()))",
        ).start()
        try:
            env = child_env(
                daemon.paths.socket, TRACKD_TRACKING_URI=str(store), TRACKD_SPOOL_DIR=str(tmp_path / "spool"),
                TRACKD_CONNECT_TIMEOUT="1", TRACKD_AUTOSTART="0", TRACKD_ARTIFACT_SNAPSHOT="0",
            )
            logged = subprocess.run([sys.executable, "-c", LOGGER, str(source)], env=env, capture_output=True, text=True, timeout=180)
        finally:
            assert daemon.stop() == 0, daemon.log()
    assert logged.returncode == 0, logged.stderr
    # It said "N events were not delivered: the daemon ... acknowledged nothing for 1 s while logging
    # calls waited for room ...: it may be stopped (SIGSTOP, a debugger), stuck writing to its disk or
    # deadlocked", spooled, reconnected, and did it again every second of the copy.
    assert logged.stderr == "", logged.stderr
    run_id, stats = logged.stdout.split(" ", 1)
    assert json.loads(stats)["spooled"] == 0
    read = subprocess.run([sys.executable, "-c", READ_BACK, str(store), run_id, str(POINTS)], capture_output=True, text=True, timeout=120)
    assert read.returncode == 0, read.stderr
    assert json.loads(read.stdout) == [True, ["checkpoint.bin"]]
