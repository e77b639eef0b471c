"""A store made unwritable by its permissions mid-run (chmod -R a-w) is an outage, as a full disk is.

Before, EACCES refused the run's artifacts and its end for good ("... will not be written: ...
Permission denied"), and once the user gave the permissions back nothing was written again: the
run stayed RUNNING for ever, its texts missing. A source file the daemon may not read stays the
artifact's own refusal: nothing the store's owner can fix.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from helpers import Child, child_env, wait_for
from test_store_outage_cut_back import STEPS, Logger, every_step_once

from trackd._paths import DaemonPaths
from trackd.client._control import query_status

# Run as root, the daemon and its client would write through any permission: this runs the child
# (and the daemon it starts) without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH, as an ordinary user.
UNPRIVILEGED = (
    "import os, sys\n"
    "os.execvp('setpriv', ['setpriv', '--bounding-set', '-dac_override,-dac_read_search', sys.executable, '-c', *sys.argv[1:]])\n"
)


def unprivileged(code: str, args: list[str], env: dict[str, str]) -> Child:
    """``code`` in a child that (as root) has no permission override, nor the daemon it starts."""
    if os.geteuid() != 0:
        return Child(code, args, env)
    if shutil.which("setpriv") is None:
        pytest.skip("running as root, and setpriv is missing to drop CAP_DAC_OVERRIDE (the store's permissions would not apply)")
    probe = subprocess.run(["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot drop CAP_DAC_OVERRIDE with setpriv here: {probe.stderr.strip()}")
    return Child(UNPRIVILEGED, [code, *args], env)


def chmod_tree(store: Path, *, writable: bool) -> None:
    subprocess.run(["chmod", "-R", "u+w" if writable else "a-w", str(store)], check=True)


def test_a_store_made_unwritable_mid_run_holds_its_events_and_writes_them_once_permissions_return(
    tmp_path: Path, paths: DaemonPaths
) -> None:
    store = tmp_path / "mlruns"
    logger = Logger(store, paths.socket, tmp_path / "control", keys=1, spawn=unprivileged, autostart=True)
    with logger.child:
        logger.log(flush=True)
        try:
            chmod_tree(store, writable=False)
            logger.log(flush=False)
            wait_for(lambda: "Permission denied" in paths.log.read_text(), 30, message="the daemon to meet the unwritable store")
            # Held, not refused: said as the store's outage, in the log and status.
            assert "cannot be written (Permission denied)" in paths.log.read_text(), paths.log.read_text()
            status = query_status(paths.socket)
            assert status["backlog_records"] and status["write_errors"], status
        finally:
            chmod_tree(store, writable=True)
        logger.log(flush=True)
        logger.finish()
    # The client was told why its events waited, once, and nothing was refused for good.
    told = [line for line in logger.child.err if "Permission denied" in line]
    assert len(told) == 1, logger.child.stderr()
    assert "will not be written" not in logger.child.stderr(), logger.child.stderr()
    every_step_once(store, logger.run_id, 3 * STEPS, keys=1)


# Logs a large file by path (the daemon copies it: no snapshot) that the daemon may not read.
UNREADABLE_SOURCE = """
import sys, trackd
from trackd.errors import DeliveryError
with trackd.start_run() as run:
    print("run", run.info.run_id, flush=True)
    trackd.log_metric("m", 1.0)
    trackd.log_artifact(sys.argv[1])
    try:
        trackd.flush(timeout=60)
    except DeliveryError as exc:
        print("refused", exc, flush=True)
"""


def test_an_artifact_source_the_daemon_may_not_read_is_refused_as_that_artifact_not_held_as_an_outage(
    tmp_path: Path, paths: DaemonPaths
) -> None:
    store, source = tmp_path / "mlruns", tmp_path / f"model-{uuid.uuid4().hex[:6]}.bin"
    source.write_bytes(b"\0" * (9 * 1024 * 1024))  # over MAX_INLINE_ARTIFACT_SIZE: copied by the daemon
    env = child_env(paths.socket, TRACKD_TRACKING_URI=str(store), TRACKD_AUTOSTART="1", TRACKD_ARTIFACT_SNAPSHOT="0")
    source.chmod(0)
    child = unprivileged(UNREADABLE_SOURCE, [str(source)], env)
    assert child.wait(120) == 0, child.stderr()
    refused = [line for line in child.out if line.startswith("refused")]
    assert refused and "cannot be read (Permission denied)" in refused[0], child.out + child.err
    run_id = child.out[0].split()[1]

    import mlflow

    run = mlflow.MlflowClient(tracking_uri=str(store)).get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.metrics == {"m": 1.0}
