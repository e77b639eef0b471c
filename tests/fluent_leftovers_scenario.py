"""Two tests run in this order by test_fluent_environment.py in a pytest session of their own (the
file's name keeps it out of the suite's collection): the first leaves what an in-process fluent run
writes for its children in the test process, the second starts a child after it."""

from __future__ import annotations

# Imported, as in a suite whose tests use it: start_run then writes its run into multiprocessing's
# config of this process too, which spawn and forkserver children get.
import multiprocessing  # noqa: F401
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import DaemonProcess

import trackd
from trackd.client import _lineage, get_client


def test_leaves_its_run_active_in_this_process(daemon: DaemonProcess, store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACKD_AUTOSTART", "0")
    monkeypatch.setenv("TRACKD_TRACKING_URI", str(store))
    run = trackd.start_run()
    # The product's own: the processes this one starts from now on attach to the run.
    assert os.environ["TRACKD_OWNED_RUNS"] == run.info.run_id and _lineage.listed() == [run.info.run_id]
    get_client().close()  # delivered; the run is left active, as by a test that failed midway


def test_a_later_test_starts_children_that_own_no_runs() -> None:
    # Through the environment (subprocess, os.environ as it is) and multiprocessing's config (a spawn child's).
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.environ.get('TRACKD_OWNED_RUNS'))"], capture_output=True, text=True, timeout=60,
    )
    assert child.stdout.strip() == "None", child.stdout
    assert _lineage.listed() == []
