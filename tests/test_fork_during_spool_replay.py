"""A process that forks while its sender thread sends the spool file again: every child runs on.

The child's at-fork hook forgets its parent's spool reader. It closed it, and the reader was a
``BufferedReader``, whose lock the parent's sender thread held while it read: the child waited for
ever on a lock no thread of its own would release, and the parent for ever on the child (seen in a
chaos run as a producer that forked after each chunk and hung, its daemon healthy).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers import DaemonProcess, child_env, metric_lines
from mlflow.tracking import MlflowClient

# Enough for the replay to last a few hundred forks: the old code hung in each of three tries.
POINTS = 1_000_000

# Logs while no daemon answers (its events go to the spool file), says so, then forks children
# that exit at once until a flush, in a thread, returns: all the while the spool is sent again.
FORK_WHILE_RESENDING = """
import json, os, signal, sys, threading, time, trackd
run = trackd.start_run()
for step in range(POINTS):
    trackd.log_metric("loss", float(step), step=step)
print("spooled", flush=True)
flushed = threading.Event()
def flush():
    try:
        trackd.flush(timeout=120)
    finally:
        flushed.set()
threading.Thread(target=flush, daemon=True).start()
forks = 0
while not flushed.is_set():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    forks += 1
    started = time.monotonic()
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() - started > 20:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            sys.exit(f"forked child {pid} (fork {forks}) did not exit: it hung in its at-fork hook")
        time.sleep(0.001)
trackd.end_run()
print(json.dumps({"run_id": run.info.run_id, "forks": forks}))
"""


def test_children_forked_while_the_spool_is_resent_exit_and_every_point_arrives_once(
    socket_path: Path, store: Path
) -> None:
    env = child_env(
        socket_path, TRACKD_AUTOSTART="0", TRACKD_CONNECT_TIMEOUT="60", TRACKD_TRACKING_URI=str(store),
    )
    program = f"POINTS = {POINTS}\n{FORK_WHILE_RESENDING}"
    child = subprocess.Popen(
        [sys.executable, "-c", program], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    daemon = DaemonProcess(socket_path)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "spooled"
        daemon.start()
        out, err = child.communicate(timeout=180)
    finally:
        child.kill()
        child.communicate()
        if daemon.process is not None:
            daemon.stop()
    assert child.returncode == 0, err
    result = json.loads(out.splitlines()[-1])
    assert result["forks"] > 0
    run = MlflowClient(tracking_uri=str(store)).get_run(result["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.metrics["loss"] == POINTS - 1
    assert len(metric_lines(store, result["run_id"], "loss")) == POINTS
