"""A large artifact's copy at the call that cannot be made (a full disk, a file size limit, a spool
folder trackd refuses) is no exception in the training loop: the files go by their own paths, as
with TRACKD_ARTIFACT_SNAPSHOT=0, and one line says so, naming the file and why.

Real processes: a real daemon, the logging script in a child, a real tmpfs, a real RLIMIT_FSIZE;
MLflow reads the store back.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import DaemonProcess, child_env, mounted_tmpfs

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402

MIB = 1024 * 1024

# argv: store, folder of two large files, and Python to run first (the limit under test).
LOG_FOLDER = """
import sys, trackd
exec(sys.argv[3])
trackd.set_tracking_uri(sys.argv[1])
with trackd.start_run() as run:
    trackd.log_artifacts(sys.argv[2], "model")
    trackd.flush()
print(run.info.run_id)
"""

# Writes past 1 MiB fail with EFBIG (SIGXFSZ ignored, as it kills the process by default).
FILE_SIZE_LIMIT = "import resource, signal; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); resource.setrlimit(resource.RLIMIT_FSIZE, (2**20, 2**20))"


@pytest.mark.parametrize("limit", ["full disk", "file size limit", "spool folder not private"])
def test_a_snapshot_that_cannot_be_made_sends_the_files_by_path_with_one_line(
    daemon: DaemonProcess, store: Path, tmp_path: Path, limit: str
) -> None:
    folder, spool = tmp_path / "model", tmp_path / "spool"
    folder.mkdir()
    spool.mkdir(mode=0o700)
    (folder / "a.bin").write_bytes(b"a" * (9 * MIB))
    (folder / "b.bin").write_bytes(b"b" * (9 * MIB))
    if limit == "spool folder not private":
        spool.chmod(0o777)
    code = FILE_SIZE_LIMIT if limit == "file size limit" else "pass"
    env = child_env(daemon.paths.socket, TRACKD_AUTOSTART="0", TRACKD_SPOOL_DIR=str(spool))
    with mounted_tmpfs(spool, "size=2m,mode=0700") if limit == "full disk" else contextlib.nullcontext():
        result = subprocess.run(
            [sys.executable, "-c", LOG_FOLDER, str(store), str(folder), code], env=env, capture_output=True, text=True, timeout=60,
        )
        assert result.returncode == 0, result.stderr
        left = [path for path in spool.rglob("*") if path.is_file()]
    lines = [line for line in result.stderr.splitlines() if line.startswith("trackd: Could not copy artifact")]
    assert len(lines) == 1, result.stderr  # one for the call, not one per file
    why = {"full disk": "needs", "file size limit": "File too large", "spool folder not private": "other users can write to it"}[limit]
    assert f"'model/a.bin' ({folder / 'a.bin'})" in lines[0] and why in lines[0], lines[0]
    assert "keep it unchanged until flush() returns" in lines[0]
    run_id = result.stdout.split()[-1]
    mlflow_client = MlflowClient(str(store))
    for name in ("a", "b"):
        stored = Path(mlflow_client.download_artifacts(run_id, f"model/{name}.bin")).read_bytes()
        assert stored == name.encode() * (9 * MIB)
    assert left == []  # no partial copy left behind

