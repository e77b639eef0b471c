"""Children of the test process get none of the variables trackd's fluent API writes for its own
children (helpers.FLUENT_ENVIRONMENT) unless a test passes them: neither from a fluent run of the
test itself (child_env) nor from one an earlier test left (conftest's _fluent_environment_restored)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import FLUENT_ENVIRONMENT, DaemonProcess, child_env, inherited_env, run_python

import trackd
from trackd.client import get_client

TESTS = Path(__file__).resolve().parent
PRINT_FLUENT_ENVIRONMENT = f"import json, os\nprint(json.dumps({{name: os.environ.get(name) for name in {FLUENT_ENVIRONMENT!r}}}))\n"


def test_a_child_started_during_an_in_process_run_is_no_worker_of_that_run(
    daemon: DaemonProcess, store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # child_env copied the test process's TRACKD_OWNED_RUNS: the child took itself for a worker of
    # a trackd parent and sent the parent's run with its Hello.
    monkeypatch.setenv("TRACKD_AUTOSTART", "0")
    monkeypatch.setenv("TRACKD_TRACKING_URI", str(store))
    try:
        with trackd.start_run() as run:
            assert os.environ["TRACKD_OWNED_RUNS"] == run.info.run_id
            child = run_python(PRINT_FLUENT_ENVIRONMENT, child_env(daemon.paths.socket))
            told = run_python(PRINT_FLUENT_ENVIRONMENT, child_env(daemon.paths.socket, TRACKD_OWNED_RUNS=run.info.run_id))
    finally:
        get_client().close()
    assert child.returncode == 0, child.stderr
    assert json.loads(child.stdout) == dict.fromkeys(FLUENT_ENVIRONMENT)
    assert json.loads(told.stdout)["TRACKD_OWNED_RUNS"] == run.info.run_id  # a test that means it passes it


def test_a_run_an_earlier_test_left_active_in_process_is_owned_by_no_later_child() -> None:
    # An in-process fluent test's TRACKD_OWNED_RUNS stayed in the test process, and every later
    # test's children inherited it: the older-daemon test of test_harness failed in full-suite runs only.
    scenario = TESTS / "fluent_leftovers_scenario.py"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider", "-n", "0",
         f"{scenario}::test_leaves_its_run_active_in_this_process",
         f"{scenario}::test_a_later_test_starts_children_that_own_no_runs"],
        cwd=TESTS.parent, env=inherited_env(), capture_output=True, text=True, timeout=150,
    )
    assert result.returncode == 0 and "2 passed" in result.stdout, result.stdout + result.stderr
