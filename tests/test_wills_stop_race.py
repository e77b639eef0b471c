"""A process killed as `trackd daemon stop` begins gets its runs failed by the next daemon.

The stopping daemon stops reading each live connection, writes what it received, then keeps the
wills in its wills file (guarantee 3a). It kept those of live connections whose process still
ran only: a process SIGKILLed in the milliseconds between the two lost its will, and its run
stayed RUNNING for ever (1 in 15 of a reviewer's `kill -TERM <daemon>; sleep d; kill -9 <job>`).

The test makes that window last: strace stops the daemon just after it looked whether the
process still runs (it closes ``/proc/<pid>/stat``) as it stops reading its connection; the
process is SIGKILLed there, and the daemon resumed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from helpers import DaemonProcess, wait_for
from test_wills import FAILURE_REASON_TAG, WAIT_FOR_STDIN, finish, owned_runs, start_child, wait_for_status

pytestmark = pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")


def traced(pid: int) -> bool:
    """Whether a tracer is attached to process ``pid``."""
    with open(f"/proc/{pid}/status") as status:
        return any(line.split()[1] != "0" for line in status if line.startswith("TracerPid:"))


def stopping_after_looking_at(daemon: DaemonProcess, pid: int, trace: Path) -> subprocess.Popen[bytes]:
    """strace attached to ``daemon``, to stop it (SIGSTOP) once it has closed ``/proc/<pid>/stat`` for the first time."""
    tracer = subprocess.Popen(
        ["strace", "-qq", "-p", str(daemon.pid), "-o", str(trace), "-P", f"/proc/{pid}/stat",
         "-e", "trace=close", "-e", "inject=close:signal=SIGSTOP:when=1"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: traced(daemon.pid) or tracer.poll() is not None, timeout=10, message="strace attached")
    except AssertionError:
        tracer.kill()
        raise
    if tracer.poll() is not None:
        pytest.skip(f"cannot trace a process here: {tracer.stderr.read().decode() if tracer.stderr else ''}")
    return tracer


def test_a_process_killed_as_the_daemon_stops_reading_it_gets_its_run_failed_by_the_next_daemon(
    socket_path: Path, store: Path, tmp_path: Path
) -> None:
    first = DaemonProcess(socket_path).start()
    child, run_id = start_child(store, socket_path, WAIT_FOR_STDIN)  # started and flushed; TRACKD_AUTOSTART=0
    trace = tmp_path / "trace"
    tracer = None
    second = None
    try:
        wait_for(lambda: owned_runs(first) == 1, timeout=20, message="the run owned")
        tracer = stopping_after_looking_at(first, child.pid, trace)
        first.signal(signal.SIGTERM)  # stop_reading looks at the process: alive; the daemon stops there
        wait_for(lambda: "stopped by SIGSTOP" in trace.read_text(), timeout=20, message="the daemon stopped as it stops reading")
        child.kill()
        assert finish(child) == -signal.SIGKILL
        os.kill(first.pid, signal.SIGCONT)
        assert first.process is not None and first.process.wait(30) == 0
        first.stop()  # exited: closes its stderr
        log = first.log()

        second = DaemonProcess(socket_path).start()
        run = wait_for_status(store, run_id, "FAILED")  # RUNNING for ever with the old code
        assert f"process {child.pid} " in run.data.tags[FAILURE_REASON_TAG]
        assert run.data.metrics["loss"] == 1.0  # the points it flushed are there
        assert "left 1 will to the next daemon" in log and "(1 exited already)" in log, log
        assert "marked FAILED once its process has exited" not in log, log  # the stopping daemon fails nothing more
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate(timeout=30)
        if tracer is not None:
            if tracer.poll() is None:
                tracer.kill()
            tracer.communicate(timeout=30)
        if first.process is not None and first.process.poll() is None:
            os.kill(first.pid, signal.SIGCONT)
            first.stop()
        if second is not None:
            assert second.stop() == 0, second.log()
