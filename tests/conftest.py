"""Fixtures shared by every test folder: a real daemon on a short socket, a store folder, and a Client of both."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# MLflow 3.13+ refuses to open a file store without this opt-out; no telemetry from tests.
os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
# No test may start a daemon by accident on the user's real socket.
os.environ.pop("TRACKD_SOCKET", None)
os.environ["TRACKD_SOCKET"] = "/nonexistent-trackd-test-socket/d.sock"
# Nor spool into the user's spool folder: every client delivers the spool files it finds there
# after connecting, so a test would deliver another test run's leftovers into that run's store,
# and leave its own for the user's next training process to read (and pay for).
os.environ["TRACKD_SPOOL_DIR"] = _SPOOL_DIR = tempfile.mkdtemp(prefix="trackd-test-spool-")
# A suite started in the background by a shell without job control (`cmd &` in a script, nohup)
# inherits SIGINT ignored, and so does every child it starts: the tests that send a child a real
# Ctrl-C saw it ignored (exit 0, no KeyboardInterrupt). Python's own handler is not inherited
# across exec, so the children get Python's default, as when run from a terminal.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
atexit.register(shutil.rmtree, _SPOOL_DIR, ignore_errors=True)

from helpers import FLUENT_ENVIRONMENT, DaemonProcess, alive, mounted_tmpfs, short_socket_path, wait_for  # noqa: E402

from trackd import Client, ClientConfig  # noqa: E402
from trackd._paths import DaemonPaths  # noqa: E402
from trackd.client import _lineage  # noqa: E402

# Nor inherit a run, store or experiment from the shell that started the suite (a suite run from a
# trackd job would make every child a worker of that job's runs); _fluent_environment_restored
# keeps it so between tests.
for _name in FLUENT_ENVIRONMENT:
    os.environ.pop(_name, None)


@pytest.fixture
def socket_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A short private socket path, exported as TRACKD_SOCKET for the test and its children."""
    path = short_socket_path()
    monkeypatch.setenv("TRACKD_SOCKET", str(path))
    yield path
    shutil.rmtree(path.parent, ignore_errors=True)


@pytest.fixture
def daemon(socket_path: Path) -> Iterator[DaemonProcess]:
    """A real daemon process on ``socket_path``; it must exit cleanly (code 0) at teardown."""
    proc = DaemonProcess(socket_path).start()
    yield proc
    code = proc.stop()
    assert code == 0, f"daemon exited with {code}:\n{proc.log()}"


@pytest.fixture
def paths(socket_path: Path) -> Iterator[DaemonPaths]:
    """The test's daemon files; a daemon the test (or a client's autostart) left running is stopped by its pid file."""
    paths = DaemonPaths(socket_path)
    yield paths
    try:
        pid = int(paths.pid.read_text())
    except (OSError, ValueError):
        return
    if alive(pid):
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not alive(pid), timeout=30, message=f"daemon pid {pid} to exit")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs mounted for this test, unmounted afterwards (fill it with helpers.fill)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    with mounted_tmpfs(mount_point, "size=2m"):
        yield mount_point


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """Where a test's ./mlruns lives."""
    return tmp_path / "mlruns"


@pytest.fixture
def config(daemon: DaemonProcess) -> ClientConfig:
    """A client config for the test's daemon; the client never starts one of its own."""
    return ClientConfig(socket_path=daemon.paths.socket, autostart=False)


@pytest.fixture
def client(store: Path, config: ClientConfig) -> Iterator[Client]:
    """A ``Client`` of the test's store, closed (so everything it accepted is delivered) after the test."""
    with Client(store, config=config) as client:
        yield client


@pytest.fixture(autouse=True)
def _fluent_environment_restored() -> Iterator[None]:
    """Put back, after each test, what trackd's fluent API wrote into this process for its children.

    ``start_run`` in the test process puts the run in TRACKD_OWNED_RUNS (and in multiprocessing's
    config of this process, which spawn children get) until the run ends, and set_tracking_uri and
    set_experiment leave theirs (helpers.FLUENT_ENVIRONMENT). The product means its children to
    inherit them; left behind by a test, every later test's children did: one that inherited
    TRACKD_OWNED_RUNS sent "owned runs" with its Hello, and a test failed in full-suite runs only."""
    saved = {name: os.environ.get(name) for name in FLUENT_ENVIRONMENT}
    config = _lineage._process_config()
    saved_config = config.get(_lineage._CONFIG_KEY) if config is not None else None
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    config = _lineage._process_config()  # multiprocessing may have been imported by the test
    if config is not None:
        if saved_config is None:
            config.pop(_lineage._CONFIG_KEY, None)
        else:
            config[_lineage._CONFIG_KEY] = saved_config


@pytest.fixture(autouse=True)
def _spool_folder_left_as_found(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves anything new in the session's spool folder (removing it).

    The folder is shared by every test of this pytest process (one per xdist worker): a spool left
    there was delivered by any later test's client into the leaving test's store, listed by a later
    `trackd daemon status`, found by a later test's glob, in an order set by xdist's scheduling.
    A test whose processes spool gives them a folder of its own (``TRACKD_SPOOL_DIR``). Checked after
    the test's own fixtures are torn down (autouse: set up first, torn down last), so what its
    daemon's stop made its clients spool counts; what a process an earlier test left running
    spools later is blamed on the test running then."""
    before = set(os.listdir(_SPOOL_DIR))
    yield
    left = sorted(set(os.listdir(_SPOOL_DIR)) - before)
    if not left:
        return
    for name in left:
        path = os.path.join(_SPOOL_DIR, name)
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            Path(path).unlink(missing_ok=True)
    pytest.fail(
        f"{request.node.nodeid} left {', '.join(left)} in the session's spool folder {_SPOOL_DIR} (removed now): "
        "give the processes that spool a TRACKD_SPOOL_DIR of the test's own (tmp_path), or clean up what they spooled",
        pytrace=False,
    )
