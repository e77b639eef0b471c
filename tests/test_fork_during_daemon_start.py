"""A child forked while the sender thread imports ``subprocess`` to start the daemon runs on.

trackd imports ``subprocess`` only when it first starts a daemon. A child forked while the sender
thread did (the parent's import lock for ``subprocess`` taken, its module not made yet) imported
``multiprocessing.util``, which imports ``subprocess``, in trackd's at-fork hook: it waited for
ever on a lock no thread of its own would release, and its parent for ever on it (seen in a chaos
run as a producer that forked after each chunk and hung after its daemon was restarted). Its own
``import subprocess`` later (a DataLoader worker running a tool, trackd's git tags or its own daemon
start in the child) waited for ever on that lock too; now a fork waits until the import is done.
Here a meta path finder makes that import take a second, as a loaded machine can, so the fork
lands in it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import child_env
from mlflow.tracking import MlflowClient

from trackd._paths import DaemonPaths

# No daemon answers: the first point makes the sender thread start one (its `import subprocess`,
# slowed down in that thread). Once it is under way the main thread forks a child that runs CHILD
# and exits, and waits for it at most 20 s.
FORK_WHILE_THE_DAEMON_STARTS = """
import importlib.abc, json, multiprocessing, os, signal, sys, threading, time

importing = threading.Event()

class SlowImportInOtherThreads(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "subprocess" and threading.current_thread() is not threading.main_thread():
            importing.set()
            time.sleep(1.0)
        return None  # the usual finders find it

sys.meta_path.insert(0, SlowImportInOtherThreads())
import trackd
assert "subprocess" not in sys.modules
run = trackd.start_run()
assert importing.wait(30), "the sender thread did not start a daemon"
pid = os.fork()
if pid == 0:
    CHILD
    os._exit(0)
started = time.monotonic()
while os.waitpid(pid, os.WNOHANG) == (0, 0):
    if time.monotonic() - started > 20:
        os.kill(pid, signal.SIGKILL)
        sys.exit(f"forked child {pid} did not exit: it hung in its at-fork hook or after it")
    time.sleep(0.01)
trackd.log_metric("loss", 0.5, step=1)
trackd.end_run()
print(json.dumps({"run_id": run.info.run_id}))
"""


@pytest.mark.parametrize(
    "child",
    [
        pytest.param("pass", id="exits-at-once"),
        # This used to wait for ever: the parent's import lock for subprocess stayed taken in the child.
        pytest.param("import subprocess; subprocess.run(['true'], check=True)", id="runs-a-subprocess"),
    ],
)
def test_a_child_forked_while_the_sender_thread_starts_the_daemon_exits(
    paths: DaemonPaths, socket_path: Path, store: Path, child: str
) -> None:
    env = child_env(socket_path, TRACKD_TRACKING_URI=str(store))
    program = FORK_WHILE_THE_DAEMON_STARTS.replace("CHILD", child)
    result = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    run_id = json.loads(result.stdout.splitlines()[-1])["run_id"]
    run = MlflowClient(tracking_uri=str(store)).get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["loss"] == 0.5
