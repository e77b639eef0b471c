"""Output wording from the session-27 user-journey review: a refusal names what chose the folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import DaemonProcess, child_env

pytestmark = pytest.mark.timeout(120)


def _cli(socket_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trackd.cli", *args], capture_output=True, text=True, timeout=60,
        env=env if env is not None else child_env(socket_path),
    )


@pytest.fixture
def open_folder(tmp_path: Path) -> Path:
    """A folder others may write to, which trackd refuses to take spool files from."""
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o777)
    return folder


@pytest.mark.parametrize("command", [["sync"], ["daemon", "status"]])
def test_a_refused_spool_dir_option_is_named_as_the_option(daemon: DaemonProcess, open_folder: Path, command: list[str]) -> None:
    # It said "Set TRACKD_SPOOL_DIR to such a folder, e.g. <folder>/trackd-<uid>" when --spool-dir
    # chose the folder, and named the socket folder's name as a spool folder.
    result = _cli(daemon.paths.socket, *command, "--socket", str(daemon.paths.socket), "--spool-dir", str(open_folder))
    said = result.stdout + result.stderr
    assert "other users can write to it" in said, said
    assert f"Pass --spool-dir such a folder, e.g. {open_folder / f'trackd-spool-{os.getuid()}'}." in said, said
    assert "TRACKD_SPOOL_DIR" not in said, said


def test_a_refused_spool_dir_variable_names_a_spool_folder(daemon: DaemonProcess, open_folder: Path) -> None:
    env = {**child_env(daemon.paths.socket), "TRACKD_SPOOL_DIR": str(open_folder)}
    result = _cli(daemon.paths.socket, "sync", "--socket", str(daemon.paths.socket), env=env)
    assert result.returncode == 1
    assert f"Set TRACKD_SPOOL_DIR to such a folder, e.g. {open_folder / f'trackd-spool-{os.getuid()}'} (trackd creates it)." in result.stderr, result.stderr


def test_a_damaged_spool_set_aside_reads_as_one_sentence(daemon: DaemonProcess, tmp_path: Path) -> None:
    # "... at most MAX_FRAME_SIZE (16777216 bytes) are accepted.; set aside as ..."
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir(mode=0o700)
    (spool_dir / f"{'ab' * 16}.spool").write_bytes(b"\xff" * 300)
    result = _cli(daemon.paths.socket, "sync", "--socket", str(daemon.paths.socket), "--spool-dir", str(spool_dir))
    assert result.returncode == 1
    assert "; set aside as " in result.stderr, result.stderr
    assert ".; set aside" not in result.stderr, result.stderr
