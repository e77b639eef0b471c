"""The fluent API as a notebook uses it: cells run one after another in one long-lived interpreter.

A Jupyter kernel is emulated faithfully enough for what trackd sees: an interactive session
(IPython's ``InteractiveShell.init_prompts`` sets ``sys.ps1``, "so that scripts can decide if they
are running interactively", as the REPL does), each cell compiled and run in one namespace, and a
cell's exception (Ctrl-C included) shown and stored in ``sys.last_value``, as IPython's
``showtraceback`` and ``code.InteractiveInterpreter.runcode`` both do, before the next cell runs.
A kernel shut down or restarted from the notebook leaves through a normal interpreter exit.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest
from helpers import DaemonProcess, child_env, run_python

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402

KERNEL = """
import code, json, sys
sys.ps1, sys.ps2 = "In : ", "...: "  # as IPython's InteractiveShell.init_prompts
shell = code.InteractiveInterpreter({"__name__": "__main__"})
for number, cell in enumerate(json.loads(sys.argv[1]), 1):
    shell.runcode(compile(cell, f"<cell {number}>", "exec"))
"""


def _run_cells(daemon: DaemonProcess, store: Path, *cells: str) -> subprocess.CompletedProcess[str]:
    """Run ``cells`` in one emulated kernel, which then shuts down (a normal interpreter exit)."""
    env = child_env(daemon.paths.socket, TRACKD_AUTOSTART="0", TRACKD_TRACKING_URI=str(store))
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID", "RANK"):
        env.pop(name, None)
    code = f"import sys\nsys.argv[1:] = [{json.dumps([textwrap.dedent(c) for c in cells])!r}]\n{KERNEL}"
    return run_python(code, env, timeout=60.0)


@pytest.mark.parametrize(
    ("failing_cell", "shown"),
    [
        ("undefined_name", "NameError"),
        ("import os, signal, time\nos.kill(os.getpid(), signal.SIGINT)\ntime.sleep(30)", "KeyboardInterrupt"),
    ],
    ids=["typo", "ctrl-c"],
)
def test_a_cell_that_raised_earlier_does_not_fail_the_run_the_kernel_ends_at_shutdown(
    daemon: DaemonProcess, store: Path, failing_cell: str, shown: str
) -> None:
    # This used to end the run FAILED (KILLED after Ctrl-C): the exit hook took sys.last_value,
    # which the shell had set for a cell long handled, for the exception the kernel died of.
    # MLflow's exit hook ends it FINISHED.
    result = _run_cells(
        daemon, store,
        "import trackd\ntrackd.start_run()\ntrackd.log_metric('loss', 1.0, step=0)",
        failing_cell,
        "trackd.log_metric('loss', 0.5, step=1)",
    )
    assert result.returncode == 0 and shown in result.stderr, result.stderr
    [run] = MlflowClient(str(store)).search_runs(["0"])
    assert run.info.status == "FINISHED"
    assert [m.value for m in MlflowClient(str(store)).get_metric_history(run.info.run_id, "loss")] == [1.0, 0.5]


def test_common_mistakes_in_cells_name_the_argument_and_what_was_expected(daemon: DaemonProcess, store: Path) -> None:
    # log_params, set_tags and log_text used to fail inside trackd with AttributeError ("'list'
    # object has no attribute 'items'"); anything with items() is still taken, as MLflow takes it
    # (a pandas Series of metrics).
    result = _run_cells(
        daemon, store,
        "import trackd\nrun = trackd.start_run()",
        "trackd.log_params([('lr', 0.1)])",
        "trackd.set_tags(['stage'])",
        "trackd.log_text(b'bytes', 'notes.txt')",
        """
        class Series:  # pandas.Series's side of the contract: items() yields (label, value)
            def items(self):
                return iter([("acc", 0.9), ("loss", 0.1)])
        trackd.log_metrics(Series(), step=3)
        """,
    )
    assert result.returncode == 0, result.stderr
    assert "AttributeError" not in result.stderr
    for line in (
        "trackd.errors.InvalidArgument: Invalid params: expected a dict of names to values, got list.",
        "trackd.errors.InvalidArgument: Invalid tags: expected a dict of names to values, got list.",
        "trackd.errors.InvalidArgument: Invalid text for artifact 'notes.txt': expected a str, got bytes.",
    ):
        assert line in result.stderr.splitlines()
    [run] = MlflowClient(str(store)).search_runs(["0"])
    assert run.data.metrics == {"acc": 0.9, "loss": 0.1} and run.data.params == {}


def test_rerunning_a_start_run_cell_says_to_end_the_active_run_and_keeps_it(daemon: DaemonProcess, store: Path) -> None:
    # The message used to offer only nested=True; MLflow's says to end the current run first.
    start = "import trackd\nrun = trackd.start_run()\ntrackd.log_metric('loss', 1.0)"
    result = _run_cells(daemon, store, start, start, "trackd.log_metric('acc', 0.5)")
    assert result.returncode == 0, result.stderr
    [run] = MlflowClient(str(store)).search_runs(["0"])
    assert (
        f"RuntimeError: Run with UUID {run.info.run_id} is already active. To start a new run, first end the "
        "current run with trackd.end_run(). To start a nested run, call start_run with nested=True."
    ) in result.stderr.splitlines()
    assert run.data.metrics == {"loss": 1.0, "acc": 0.5} and run.info.status == "FINISHED"
