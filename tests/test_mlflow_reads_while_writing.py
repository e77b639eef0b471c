"""Real MLflow reads the store while a daemon writes it: no read may fail on a file caught mid-write.

MLflow's FileStore reads every metric file of a run in get_run and search_runs, and an empty one
raises ("Metric 'k1' is malformed. No data found."), so a run page or a run list would fail for as
long as a new metric file is visible without its first line.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import DaemonProcess, child_env

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402

RUNS, KEYS = 40, 300

# Every run gets KEYS new metric files in one batch: each is created while MLflow reads.
WRITER = f"""
import trackd
client = trackd.Client()
for _ in range({RUNS}):
    run = client.create_run("0")
    for key in range({KEYS}):
        client.log_metric(run.info.run_id, f"k{{key}}", 1.0)
    client.flush()
client.close()
"""


def _newest_run(experiment_folder: Path) -> str | None:
    runs = [entry for entry in os.scandir(experiment_folder) if entry.is_dir() and len(entry.name) == 32]
    return max(runs, key=lambda entry: entry.stat().st_mtime_ns).name if runs else None


def _empty_files(folder: Path) -> list[str]:
    try:
        with os.scandir(folder) as entries:
            return [entry.name for entry in entries if entry.stat(follow_symlinks=False).st_size == 0]
    except FileNotFoundError:  # a file or the folder seen by scandir, gone before its stat
        return []


def test_mlflow_never_sees_a_new_metric_file_before_its_first_line(daemon: DaemonProcess, store: Path) -> None:
    # This used to fail: the daemon created a metric file (open O_CREAT) and wrote its lines after,
    # and get_run raised "No data found" in about 1 read of 150 while runs got new keys.
    env = child_env(daemon.paths.socket, TRACKD_TRACKING_URI=str(store), TRACKD_AUTOSTART="0")
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(WRITER)], env=env, stderr=subprocess.PIPE, text=True)
    client = MlflowClient(tracking_uri=str(store))
    failures: list[str] = []
    reads = 0
    try:
        while writer.poll() is None:
            run_id = _newest_run(store / "0") if (store / "0").is_dir() else None
            if run_id is None:
                continue
            try:
                client.get_run(run_id)
            except Exception as exc:  # noqa: BLE001 (any failure of MLflow's reader is the finding)
                failures.append(f"{type(exc).__name__}: {exc}")
            reads += 1
            # What get_run trips on, looked at directly (as a script reading mlruns would), and
            # more often: a few get_run calls alone can miss the moment.
            failures.extend(f"empty metric file {name}" for name in _empty_files(store / "0" / run_id / "metrics"))
    finally:
        _, stderr = writer.communicate(timeout=120)
    assert (writer.returncode, stderr) == (0, "")
    assert reads > 0
    assert failures == [], f"{len(failures)} failures in {reads} reads, the first: {failures[0]}"
    runs = client.search_runs(["0"], max_results=RUNS + 1)
    assert len(runs) == RUNS and all(len(run.data.metrics) == KEYS for run in runs)
