"""What ``trackd daemon start|stop|status`` and the fluent search_runs say is true, and names what the user used."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import textwrap

from helpers import SOCKET_PARENT, DaemonProcess, RawClient, alive, child_env, run_python, wait_for

from trackd._paths import DaemonPaths
from trackd.client._control import listener_pid, query_status
from trackd.protocol import Welcome

pytestmark = pytest.mark.timeout(120)


def trackd_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "trackd.cli", *args], capture_output=True, text=True, timeout=45, env=env)


def test_status_says_how_many_clients_its_reply_leaves_out(daemon: DaemonProcess, tmp_path: Path) -> None:
    # It said "... and 290 more gone (--json lists every client)" while the reply, and --json, listed 256 of 300.
    for number in range(300):
        raw = RawClient(daemon.paths.socket)
        assert isinstance(raw.hello(str(tmp_path / "mlruns"), client_id=f"gone-{number}"), Welcome)
        raw.close()
    wait_for(lambda: query_status(daemon.paths.socket)["clients_connected"] == 0)
    status = query_status(daemon.paths.socket)
    listed = len(status["clients"])  # type: ignore[arg-type]
    assert (listed, status["clients_known"]) == (256, 300)
    text = trackd_cli("daemon", "status", "--socket", str(daemon.paths.socket))
    assert text.returncode == 0, text.stderr
    assert "--json lists every client" not in text.stdout
    assert (
        "... and 246 more gone (--json lists them), and 44 more that the daemon does not list, here or in --json: "
        "it lists 256 of the 300 clients it knows, connected ones first, then the latest to leave"
    ) in text.stdout


def test_status_help_says_it_exits_1_when_no_daemon_answers() -> None:
    result = trackd_cli("daemon", "status", "--help")
    assert "1 when none answers" in " ".join(result.stdout.split())


@pytest.fixture
def shared_folder() -> Iterator[Path]:
    """A folder other users can write (mode 1777, as /tmp), where trackd refuses to put its socket."""
    folder = Path(tempfile.mkdtemp(prefix="tdw-", dir=SOCKET_PARENT))
    folder.chmod(0o1777)
    yield folder
    folder.rmdir()


def test_start_with_socket_option_refused_advises_the_option(shared_folder: Path) -> None:
    # It advised "Set TRACKD_SOCKET to a socket path in such a folder" to a user who had passed --socket.
    env = {k: v for k, v in os.environ.items() if k != "TRACKD_SOCKET"}
    result = trackd_cli("daemon", "start", "--socket", str(shared_folder / "x.sock"), env=env)
    assert result.returncode == 1
    assert f"trackd refuses the folder {shared_folder}: other users can write to it" in result.stderr
    assert "Pass --socket a socket path in such a folder" in result.stderr
    assert "leave --socket out for the default" in result.stderr
    assert "TRACKD_SOCKET" not in result.stderr
    assert not (shared_folder / "x.sock").exists()


def test_start_with_too_long_socket_option_advises_the_option() -> None:
    result = trackd_cli("daemon", "start", "--socket", "/tmp/" + "d" * 120 + "/x.sock")
    assert result.returncode == 1
    assert "pass --socket a shorter one" in result.stderr and "TRACKD_SOCKET" not in result.stderr


def test_stop_says_that_connected_clients_start_a_new_daemon(paths: DaemonPaths, tmp_path: Path) -> None:
    started = trackd_cli("daemon", "start", "--socket", str(paths.socket))
    assert started.returncode == 0, started.stderr
    raw = RawClient(paths.socket)
    try:
        assert isinstance(raw.hello(str(tmp_path / "mlruns")), Welcome)
        stopped = trackd_cli("daemon", "stop", "--socket", str(paths.socket))
    finally:
        raw.close()
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.splitlines()[-1] == (
        "trackd: 1 client was connected: a running process starts a new daemon as soon as it next logs, flushes or "
        "reads; stop those processes first, or run them with TRACKD_AUTOSTART=0, to keep the daemon stopped."
    )


def test_stop_without_connected_clients_says_nothing_more(paths: DaemonPaths) -> None:
    started = trackd_cli("daemon", "start", "--socket", str(paths.socket))
    assert started.returncode == 0, started.stderr
    pid = listener_pid(paths.socket)
    assert pid
    stopped = trackd_cli("daemon", "stop", "--socket", str(paths.socket))
    assert stopped.returncode == 0 and not alive(pid)
    assert stopped.stdout.splitlines() == [f"trackd daemon (pid {pid}) stopped after writing everything it had received"]


def test_fluent_search_runs_filter_error_says_mlflows_words(daemon: DaemonProcess, store: Path) -> None:
    # The fluent function filters as Client.search_runs does, and refuses what MLflow refuses.
    result = run_python(textwrap.dedent(
        """
        import trackd
        with trackd.start_run() as run:
            trackd.log_metric("loss", 0.5)
        print(len(trackd.search_runs(filter_string="metrics.loss < 1", output_format="list")))
        print(len(trackd.search_runs(filter_string="metrics.loss > 1", output_format="list")))
        try:
            trackd.search_runs(filter_string="metrics.loss < 1 or metrics.loss > 2", output_format="list")
        except trackd.InvalidArgument as exc:
            print(exc)
        """),
        child_env(daemon.paths.socket, TRACKD_AUTOSTART="0", TRACKD_TRACKING_URI=str(store)),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["1", "0", "Invalid clause(s) in filter string: 'or'"]


def test_stop_of_a_stopped_daemon_still_counts_its_connected_clients(paths: DaemonPaths, tmp_path: Path) -> None:
    # A SIGSTOPped daemon did not answer the status request that counts its clients: stop gave it
    # 2 s, then signalled it without a word of the client that would start a new daemon at once.
    started = trackd_cli("daemon", "start", "--socket", str(paths.socket))
    assert started.returncode == 0, started.stderr
    pid = listener_pid(paths.socket)
    assert pid
    raw = RawClient(paths.socket)
    try:
        assert isinstance(raw.hello(str(tmp_path / "mlruns")), Welcome)
        os.kill(pid, signal.SIGSTOP)
        stopped = trackd_cli("daemon", "stop", "--socket", str(paths.socket))
    finally:
        raw.close()
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.splitlines()[-1].startswith("trackd: 1 client was connected: "), stopped.stdout
