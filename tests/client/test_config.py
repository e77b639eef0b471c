"""``ClientConfig``: a bad setting is refused by name, the field's or the TRACKD_* variable's, with the value."""

from __future__ import annotations

import os
import pwd
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from helpers import child_env, run_python

from trackd import ClientConfig
from trackd.client._config import resolve_tracking_uri

ABOVE_ZERO = "a number of seconds above 0, at most 604800"
ZERO_OR_MORE = "a number of seconds, 0 or more, at most 604800"
BAD_VARIABLES = [
    ("TRACKD_ON_FULL", "wait", "one of block, drop (any case)"),
    ("TRACKD_MAX_BUFFERED", "0", "a whole number of at least 1"),
    ("TRACKD_MAX_BUFFERED", "lots", "a whole number of at least 1"),
    ("TRACKD_MAX_BUFFERED_BYTES", "0", "a whole number of at least 1"),
    ("TRACKD_MAX_BUFFERED_BYTES", "64MiB", "a whole number of at least 1"),
    ("TRACKD_FLUSH_INTERVAL", "0", ABOVE_ZERO),
    ("TRACKD_FLUSH_INTERVAL", "-1", ABOVE_ZERO),
    ("TRACKD_EXIT_TIMEOUT", "nan", ZERO_OR_MORE),
    ("TRACKD_CONNECT_TIMEOUT", "10s", ABOVE_ZERO),
    # 0 could never complete a handshake: every event was spooled with a healthy daemon.
    ("TRACKD_CONNECT_TIMEOUT", "0", ABOVE_ZERO),
    # poll() takes at most 2**31 - 1 ms: these were accepted, and every attempt to connect then
    # died in the sender thread with OverflowError, a traceback repeated forever.
    ("TRACKD_CONNECT_TIMEOUT", "1e23", ABOVE_ZERO),
    ("TRACKD_FLUSH_INTERVAL", "1e23", ABOVE_ZERO),
    ("TRACKD_EXIT_TIMEOUT", "1e23", ZERO_OR_MORE),
    ("TRACKD_AUTOSTART", "maybe", "one of 1, true, yes, on, 0, false, no, off (any case)"),
]


@pytest.mark.parametrize(("variable", "value", "expected"), BAD_VARIABLES, ids=[f"{v}={x}" for v, x, _ in BAD_VARIABLES])
def test_from_env_names_the_variable_and_its_bad_value(monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str) -> None:
    # TRACKD_ON_FULL=wait used to say "on_full must be one of block, drop", naming no variable.
    monkeypatch.setenv(variable, value)
    message = f"Environment variable {variable}={value!r} is not valid: expected {expected}."
    with pytest.raises(ValueError, match=re.escape(message)):
        ClientConfig.from_env()


@pytest.mark.parametrize(("value", "autostart"), [("0", False), ("OFF", False), ("no", False), ("1", True), ("Yes", True), ("", True)])
def test_from_env_reads_autostart_words(monkeypatch: pytest.MonkeyPatch, value: str, autostart: bool) -> None:
    # "off" used to mean on: anything but 0, false and no did.
    monkeypatch.setenv("TRACKD_AUTOSTART", value)
    assert ClientConfig.from_env().autostart is autostart


@pytest.mark.parametrize(("value", "on_full"), [("DROP", "drop"), (" Block ", "block"), ("drop", "drop")])
def test_from_env_reads_on_full_words_in_any_case(monkeypatch: pytest.MonkeyPatch, value: str, on_full: str) -> None:
    # "DROP" was refused while TRACKD_AUTOSTART took "OFF".
    monkeypatch.setenv("TRACKD_ON_FULL", value)
    assert ClientConfig.from_env().on_full == on_full
    assert ClientConfig(on_full=value).on_full == on_full


def test_from_env_takes_empty_variables_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable, _, _ in BAD_VARIABLES:
        monkeypatch.setenv(variable, "")
    assert ClientConfig.from_env() == ClientConfig()


@pytest.mark.parametrize(
    ("field", "value"), [("on_full", "wait"), ("max_buffered", 0), ("max_buffered_bytes", 0), ("flush_interval", 0.0), ("exit_timeout", -1.0), ("autostart", "no")]
)
def test_client_config_names_the_field_and_its_bad_value(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=re.escape(f"ClientConfig {field} must be ") + ".*" + re.escape(f"got {value!r}.")):
        ClientConfig(**{field: value})  # type: ignore[arg-type]


def test_a_logging_process_with_a_bad_variable_fails_naming_it(tmp_path: Path) -> None:
    # What the user saw: the first logging call raised without naming TRACKD_ON_FULL.
    env = child_env(tmp_path / "none.sock", TRACKD_ON_FULL="wait", TRACKD_AUTOSTART="0", TRACKD_TRACKING_URI=str(tmp_path / "mlruns"))
    result = run_python("import trackd\ntrackd.log_metric('loss', 1.0)\n", env)
    assert result.returncode == 1
    assert "ValueError: Environment variable TRACKD_ON_FULL='wait' is not valid: expected one of block, drop (any case)." in result.stderr


@pytest.mark.parametrize("uri", ["databricks", "databricks-uc"])
def test_a_databricks_tracking_uri_is_a_server_not_a_folder_named_so(uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # set_tracking_uri("databricks") wrote to ./databricks: the word has no scheme.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="is not a path or file: URI"):
        resolve_tracking_uri(uri)


@pytest.mark.parametrize("uri", ["file://mlruns", "file://otherhost/data/mlruns"])
def test_a_file_uri_naming_a_host_is_refused_not_read_as_the_working_folder(uri: str, tmp_path: Path) -> None:
    # set_tracking_uri("file://mlruns") used to log into the working folder itself ("mlruns" is the
    # URI's host, its path is empty): experiment folders appeared beside the user's files. MLflow
    # refuses such a URI ("file://mlruns is not a valid remote uri").
    env = child_env(tmp_path / "none.sock", TRACKD_AUTOSTART="0")
    code = f"import trackd\ntrackd.set_tracking_uri({uri!r})\ntrackd.log_metric('loss', 1.0)\n"
    result = run_python(code, env, cwd=tmp_path)
    assert result.returncode == 1
    assert f"ValueError: Tracking URI {uri!r} names the host" in result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == []


@pytest.mark.parametrize(("variable", "uri"), [("TRACKD_TRACKING_URI", "sqlite:///runs.db"), ("MLFLOW_TRACKING_URI", "file://mlruns")])
def test_a_bad_tracking_uri_from_the_environment_names_its_variable(variable: str, uri: str, tmp_path: Path) -> None:
    # TRACKD_TRACKING_URI=sqlite:///runs.db failed the first logging call with "tracking URI
    # 'sqlite:///runs.db' is not a path or file: URI", naming no variable: the script sets no URI.
    env = child_env(tmp_path / "none.sock", TRACKD_AUTOSTART="0", **{variable: uri})
    result = run_python("import trackd\ntrackd.log_metric('loss', 1.0)\n", env, cwd=tmp_path)
    assert result.returncode == 1
    assert f"ValueError: Environment variable {variable}={uri!r} is not valid: " in result.stderr


@pytest.mark.parametrize("prefix", ["file://", "file://localhost", "file://127.0.0.1", "file:"])
def test_a_file_uri_of_this_machine_names_its_path(prefix: str, tmp_path: Path) -> None:
    assert resolve_tracking_uri(prefix + str(tmp_path / "mlruns")) == str(tmp_path / "mlruns")


# Drops to ``sys.argv[1]``, a uid the passwd file does not list, with HOME unset: a container run
# with `--user 12345` (or OpenShift's random uid) and a clean environment.
SPOOL_DIR_WITHOUT_A_HOME = """
import os, sys, trackd
trackd.ClientConfig.from_env()  # imports what it needs while the interpreter's folders are readable
uid = int(sys.argv[1])
os.setgid(uid)
os.setuid(uid)
print(trackd.ClientConfig.from_env().spool_dir)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a child as a uid the passwd file does not list")
def test_a_process_with_no_home_folder_spools_to_the_temp_folder(tmp_path: Path) -> None:
    # This used to raise RuntimeError("Could not determine home directory.") from Path.home() in
    # every client, so a job in such a container could not log at all.
    uid = next(uid for uid in range(54321, 60000) if not _has_passwd_entry(uid))
    env = child_env(tmp_path / "none.sock")
    for variable in ("HOME", "TRACKD_SPOOL_DIR", "XDG_CACHE_HOME"):
        env.pop(variable, None)
    result = subprocess.run([sys.executable, "-c", SPOOL_DIR_WITHOUT_A_HOME, str(uid)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(Path(tempfile.gettempdir()) / f"trackd-spool-{uid}")


def _has_passwd_entry(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True
