"""A large figure's call cut short by Ctrl-C: the figure is still written.

log_figure saves a file over 8 MiB into a temporary folder, and the daemon copies it from there
after the call; the call waits for that copy. A real child process gets a real SIGINT during that
wait (the daemon is stopped meanwhile), catches the KeyboardInterrupt, resumes the daemon and
exits; MLflow reads the figure back from the store.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from fluent_helpers import fluent_env, mlflow_reader, run_child
from helpers import DaemonProcess

pytest.importorskip("mlflow")

SIZE = 9 * 1024 * 1024

# The interrupter sends SIGINT once the figure's record is buffered or sent (the daemon, stopped,
# acknowledges nothing): the main thread is then in the call's wait for the daemon's copy.
SCRIPT = """
import os, signal, sys, threading, time, trackd
from trackd.client import get_client
daemon_pid = int(sys.argv[1])
class Figure:
    def savefig(self, fname, **kwargs):
        with open(fname, "wb") as f:
            f.write(b"." * SIZE)
def interrupt_once_the_figure_is_logged():
    while not any(get_client().stats()[key] for key in ("buffered", "unacked_events")):
        time.sleep(0.01)
    os.kill(os.getpid(), signal.SIGINT)
with trackd.start_run() as run:
    trackd.flush()
    os.kill(daemon_pid, signal.SIGSTOP)
    threading.Thread(target=interrupt_once_the_figure_is_logged, daemon=True).start()
    try:
        trackd.log_figure(Figure(), "plots/big.svg")
        time.sleep(20)  # the interrupt lands here if the call returned first
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    finally:
        os.kill(daemon_pid, signal.SIGCONT)
print(run.info.run_id)
"""


def test_a_large_figure_whose_call_is_interrupted_is_still_written(daemon: DaemonProcess, store: Path, tmp_path: Path) -> None:
    # This used to remove the temporary file with its record buffered: at exit, "1 logged item(s)
    # ... will not be written: ... cannot be read (No such file or directory)", and no figure.
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = fluent_env(daemon, store, TMPDIR=str(temporary), TRACKD_CONNECT_TIMEOUT="30")
    try:
        result = run_child(
            SCRIPT.replace("SIZE", str(SIZE)).replace("sys.argv[1]", str(daemon.pid)), env,
        )
    finally:
        daemon.signal(signal.SIGCONT)  # should the child have died with the daemon stopped
    assert result.returncode == 0, result.stderr
    assert "interrupted" in result.stdout
    assert "will not be written" not in result.stderr, result.stderr
    run_id = result.stdout.split()[-1]
    figure = mlflow_reader(store).download_artifacts(run_id, "plots/big.svg", str(tmp_path / "down"))
    assert Path(figure).read_bytes() == b"." * SIZE
