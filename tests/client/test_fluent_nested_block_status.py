"""Runs nested in a `with start_run()` block, started without a `with`, end with the block's status.

A migrating user's sweep started each trial with `start_run(nested=True)` inside the parent's
`with` block; a trial that raised was ended FINISHED (its parent FAILED), so the UI showed the
crashed trial as a success. Real child processes against a real daemon, read back with MLflow.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fluent_helpers import fluent_env, mlflow_reader, run_child
from helpers import DaemonProcess

TRIAL_RAISES = """
import signal, trackd
try:
    with trackd.start_run(run_name="sweep"):
        trackd.start_run(run_name="trial-1", nested=True)
        trackd.end_run()
        trackd.start_run(run_name="trial-2", nested=True)
        trackd.start_run(run_name="step", nested=True)
        {fail}
except {caught}:
    pass
"""


def statuses(store: Path) -> dict[str, str]:
    return {run.info.run_name: run.info.status for run in mlflow_reader(store).search_runs(["0"])}


@pytest.mark.parametrize(("fail", "caught", "status"), [
    ('raise ValueError("diverged")', "ValueError", "FAILED"),
    ("raise KeyboardInterrupt", "KeyboardInterrupt", "KILLED"),
    ("pass", "ValueError", "FINISHED"),
])
def test_runs_nested_in_a_block_end_with_its_status(daemon: DaemonProcess, store: Path, fail: str, caught: str, status: str) -> None:
    result = run_child(TRIAL_RAISES.format(fail=fail, caught=caught), fluent_env(daemon, store))
    assert result.returncode == 0, result.stderr
    # trial-1 ended itself before; trial-2 and its own nested run were active when the block was left.
    assert statuses(store) == {"sweep": status, "trial-1": "FINISHED", "trial-2": status, "step": status}
