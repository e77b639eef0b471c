"""Fixtures shared by every test folder: a real daemon on a short socket, and a store folder."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

# MLflow 3.13+ refuses to open a file store without this opt-out; no telemetry from tests.
os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
# No test may start a daemon by accident on the user's real socket.
os.environ.pop("TRACKD_SOCKET", None)
os.environ["TRACKD_SOCKET"] = "/nonexistent-trackd-test-socket/d.sock"

from helpers import DaemonProcess, short_socket_path  # noqa: E402


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
def store(tmp_path: Path) -> Path:
    """Where a test's ./mlruns lives."""
    return tmp_path / "mlruns"
