"""With a disk that stays full, a training loop's copies at the call fail at every call: one line
for the process, and how many in all at close, not one line per ``log_artifact``.

Real processes: a real daemon, the loop in a child, a real full tmpfs for its spool folder; MLflow
reads the store back.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import DaemonProcess, child_env, mounted_tmpfs

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402

MIB = 1024 * 1024
EPOCHS = 4

# argv: store, checkpoint. A checkpoint rewritten and logged each epoch, flushed before the next
# rewrite (its copy by path needs it unchanged until then).
LOOP = f"""
import sys, trackd
trackd.set_tracking_uri(sys.argv[1])
with trackd.start_run() as run:
    for epoch in range({EPOCHS}):
        with open(sys.argv[2], "wb") as f:
            f.write(bytes([65 + epoch]) * (9 * 1024 * 1024))
        trackd.log_artifact(sys.argv[2], artifact_path=f"epoch{{epoch}}")
        trackd.flush()
print(run.info.run_id)
"""


def test_a_loop_whose_copies_at_the_call_keep_failing_gets_one_line_and_a_count_at_close(
    daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    # This used to print one "Could not copy artifact ..." line per epoch.
    spool, checkpoint = tmp_path / "spool", tmp_path / "last.ckpt"
    spool.mkdir(mode=0o700)
    env = child_env(daemon.paths.socket, TRACKD_AUTOSTART="0", TRACKD_SPOOL_DIR=str(spool))
    with mounted_tmpfs(spool, "size=2m,mode=0700"):  # no room for a 9 MiB copy, at any call
        result = subprocess.run(
            [sys.executable, "-c", LOOP, str(store), str(checkpoint)], env=env, capture_output=True, text=True, timeout=120,
        )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert len([line for line in lines if line.startswith("trackd: Could not copy artifact 'epoch0/last.ckpt'")]) == 1, result.stderr
    assert f"trackd: {EPOCHS} large artifact files in all could not be copied at the call" in result.stderr, result.stderr
    assert len(lines) == 2, result.stderr
    run_id = result.stdout.split()[-1]
    for epoch in range(EPOCHS):  # each went by its own path, and was stored as it was at its flush
        stored = Path(MlflowClient(str(store)).download_artifacts(run_id, f"epoch{epoch}/last.ckpt")).read_bytes()
        assert stored == bytes([65 + epoch]) * (9 * MIB)
