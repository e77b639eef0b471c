"""A large figure: the call does not wait for the daemon, and the figure is written all the same.

log_figure saves a file over 8 MiB into a temporary folder, and the daemon copies it from there
after the call. The call returns at once, also with the daemon stopped; the folder goes once the
daemon has copied the file (at a later large figure, or at close). A real child process logs with
the daemon stopped (SIGSTOP), and gets a real SIGINT; MLflow reads the figure back from the store.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from fluent_helpers import fluent_env, mlflow_reader, run_child
from helpers import Child, DaemonProcess, wait_for

pytest.importorskip("mlflow")

SIZE = 9 * 1024 * 1024

# The interrupter sends SIGINT once the figure's record is buffered or sent (the daemon, stopped,
# acknowledges nothing): the main thread is then in the call (it used to wait there for the
# daemon's copy) or just past it.
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
    # A spool folder of its own: the figure's copy may be left in a `<client id>.media` folder there,
    # which in the session's folder a later test's client would deliver or its status list.
    env = fluent_env(daemon, store, TMPDIR=str(temporary), TRACKD_CONNECT_TIMEOUT="30", TRACKD_SPOOL_DIR=str(tmp_path / "spool"))
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


RETURNS = """
import os, sys, time, trackd
class Figure:
    def savefig(self, fname, **kwargs):
        with open(fname, "wb") as f:
            f.write(b"." * SIZE)
def wait_for_file(path):
    while not os.path.exists(path):
        time.sleep(0.01)
with trackd.start_run() as run:
    trackd.flush()
    print("ready", flush=True)
    wait_for_file(sys.argv[1])
    trackd.log_figure(Figure(), "plots/big.svg")
    print("returned", flush=True)
    wait_for_file(sys.argv[2])
print(run.info.run_id, flush=True)
"""


def test_a_large_figure_call_returns_while_the_daemon_is_stopped_and_its_folder_goes_once_written(
    daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    # The call used to wait for the daemon's copy: with the daemon stopped, TRACKD_CONNECT_TIMEOUT
    # (here 600 s) before it returned, a logging call waiting on a socket.
    spool = tmp_path / "spool"  # the figure's folder waits beside the spool (see _media_folders)
    env = fluent_env(daemon, store, TRACKD_SPOOL_DIR=str(spool), TRACKD_CONNECT_TIMEOUT="600")
    logged, finish = tmp_path / "log", tmp_path / "finish"
    with Child(RETURNS.replace("SIZE", str(SIZE)), [str(logged), str(finish)], env) as child:
        try:
            wait_for(lambda: "ready" in child.out, timeout=60)
            daemon.signal(signal.SIGSTOP)
            logged.touch()
            wait_for(lambda: "returned" in child.out, timeout=60)
            assert [path.name.startswith("trackd-artifact-") for path in spool.glob("*.media/trackd-*")] == [True]  # not copied yet
        finally:
            daemon.signal(signal.SIGCONT)
            finish.touch()
        assert child.wait(60) == 0, child.stderr()
    assert child.stderr() == ""
    figure = mlflow_reader(store).download_artifacts(child.out[-1], "plots/big.svg", str(tmp_path / "down"))
    assert Path(figure).read_bytes() == b"." * SIZE
    assert list(spool.glob("*.media/*")) == []  # removed at close, once the daemon had copied it
