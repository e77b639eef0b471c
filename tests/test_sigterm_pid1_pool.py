"""A SIGTERM to a job that is PID 1 of its pid namespace keeps every point its Pool's workers logged.

A container whose entrypoint is the Python job itself (`docker run image python train.py`) runs it
as PID 1 of the container's pid namespace: `docker stop` SIGTERMs that process alone, and its exit
SIGKILLs every other process of the namespace. The job's handler passed the signal on to its
Pool's workers only as it ended, a moment before its own exit killed them: each lost what its
buffer held, and its run stayed RUNNING (a daemon's will does not reach into another pid
namespace, docs/guarantees.md 3a). The namespace here is made with `unshare`; the daemon runs
outside it and is reached by its socket's path, as a container reaches one through a mounted folder.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import DaemonProcess, child_env, wait_for
from test_sigterm_pool_stalled_daemon import POOL_JOB, _logged, assert_every_point_of_the_pool_job

NAMESPACE = ["unshare", "--pid", "--fork", "--mount-proc"]

# tini's part that matters: run the command as its only child, pass SIGTERM on to it, and exit
# with its status as soon as it exits.
FAKE_TINI = """#!{python}
import signal, subprocess, sys
child = subprocess.Popen(sys.argv[1:])
signal.signal(signal.SIGTERM, lambda signum, frame: child.send_signal(signum))
code = child.wait()
sys.exit(128 - code if code < 0 else code)
"""


def _can_make_pid_namespaces() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run([*NAMESPACE, "true"], capture_output=True, timeout=30).returncode == 0


@pytest.mark.timeout(180)
@pytest.mark.skipif(not _can_make_pid_namespaces(), reason="needs `unshare --pid --mount-proc` (root)")
@pytest.mark.parametrize("daemon_stalled", [False, True], ids=["healthy-daemon", "stalled-daemon"])
@pytest.mark.parametrize("method", ["fork", "spawn"])
@pytest.mark.parametrize("pid_1", ["job", "tini"])
def test_sigterm_to_pid_1_alone_keeps_every_point_its_pool_workers_logged(
    daemon: DaemonProcess, store: Path, tmp_path: Path, method: str, daemon_stalled: bool, pid_1: str
) -> None:
    env = child_env(
        daemon.paths.socket, TRACKD_TRACKING_URI=str(store), TRACKD_AUTOSTART="0", TRACKD_EXIT_TIMEOUT="2",
        # Their calls wait for room until the signal, however long the workers take to get there.
        TRACKD_CONNECT_TIMEOUT="600", TRACKD_SPOOL_DIR=str(tmp_path / "spool"),
    )
    # Two workers log until the signal comes (with the daemon stopped, waiting for room in their
    # full buffers), noting every 1,000th step they logged.
    script = tmp_path / "job.py"
    script.write_text(POOL_JOB)
    init: list[str] = []
    if pid_1 == "tini":
        tini = tmp_path / "tini"
        tini.write_text(FAKE_TINI.format(python=sys.executable))
        tini.chmod(0o755)
        init = [str(tini)]
    with (tmp_path / "stderr").open("w+") as stderr:
        namespace = subprocess.Popen(
            [*NAMESPACE, *init, sys.executable, str(script), str(tmp_path), method], env=env, cwd=tmp_path,
            start_new_session=True, stdout=subprocess.DEVNULL, stderr=stderr,
        )
    try:
        wait_for(lambda: all((tmp_path / f"started{worker}").exists() for worker in (0, 1)), timeout=60,
                 message="both workers to start their runs")
        # The job or tini: PID 1 in its namespace (unshare's only child).
        (first,) = map(int, Path(f"/proc/{namespace.pid}/task/{namespace.pid}/children").read_text().split())
        assert (Path(f"/proc/{first}/comm").read_text().strip() == "tini") == (pid_1 == "tini")
        if daemon_stalled:
            daemon.signal(signal.SIGSTOP)
        try:
            (tmp_path / "go").touch()
            wait_for(lambda: all(_logged(tmp_path, worker) >= 20_000 for worker in (0, 1)), timeout=60,
                     message="both workers to log 20,000 points")
            os.kill(first, signal.SIGTERM)  # as `docker stop` does: PID 1 alone
            assert namespace.wait(120) == 128 + signal.SIGTERM, (tmp_path / "stderr").read_text()
        finally:
            if daemon_stalled:
                daemon.signal(signal.SIGCONT)
    finally:
        if namespace.poll() is None:
            os.killpg(namespace.pid, signal.SIGKILL)
            namespace.wait()
    # The namespace's end used to kill the workers as they were given the signal: their buffers
    # were lost without a line, and their runs stayed RUNNING.
    assert_every_point_of_the_pool_job(env, store, tmp_path)
