"""``start_run`` of a run id that is not in the store: created, and said so where it looks like a mistake.

MLflow's start_run raises "Run '...' not found" for such an id. trackd creates the run, so that
the ranks of a distributed job may start in any order; a stale MLFLOW_RUN_ID left set in the
shell (or naming a run of another store) made a new, empty run without a word.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fluent_helpers import fluent_env, only_run, run_child
from helpers import DaemonProcess

START = "import trackd\nwith trackd.start_run({args}):\n    trackd.log_metric('loss', 1.0)\n"


@pytest.mark.parametrize("rank", [None, ""], ids=["no-RANK", "RANK-empty"])
def test_a_stale_mlflow_run_id_makes_a_run_and_one_line_says_so(daemon: DaemonProcess, store: Path, rank: str | None) -> None:
    env = {"MLFLOW_RUN_ID": "not-a-run", **({"RANK": rank} if rank is not None else {})}
    result = run_child(START.format(args=""), fluent_env(daemon, store, **env))
    assert result.returncode == 0, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(f"trackd: MLFLOW_RUN_ID=not-a-run: no run has that id in the store at {store}, "), line
    assert "(MLflow raises \"Run 'not-a-run' not found\")" in line and "set RANK in each" in line
    run = only_run(store)
    assert (run.info.run_id, run.info.status, run.data.metrics) == ("not-a-run", "FINISHED", {"loss": 1.0})


@pytest.mark.parametrize(
    ("args", "env"),
    [
        ("", {"MLFLOW_RUN_ID": "shared", "RANK": "0"}),
        ("", {"MLFLOW_RUN_ID": "shared", "RANK": "1"}),
        ("run_id='shared'", {}),  # documented: a run id the code gives is created, as ranks without RANK do
    ],
    ids=["MLFLOW_RUN_ID-rank-0", "MLFLOW_RUN_ID-rank-1", "run_id"],
)
def test_a_run_id_a_launcher_hands_out_is_created_quietly(daemon: DaemonProcess, store: Path, args: str, env: dict[str, str]) -> None:
    result = run_child(START.format(args=args), fluent_env(daemon, store, **env))
    assert (result.returncode, result.stderr) == (0, "")
    assert only_run(store).info.run_id == "shared"


def test_a_run_an_ancestor_owns_is_created_quietly_and_left_running(daemon: DaemonProcess, store: Path) -> None:
    # TRACKD_OWNED_RUNS as the process that started this one set it: its run may not be written yet.
    env = fluent_env(daemon, store, MLFLOW_RUN_ID="parents", TRACKD_OWNED_RUNS="other,parents")
    result = run_child(START.format(args=""), env)
    assert (result.returncode, result.stderr) == (0, "")
    run = only_run(store)
    assert (run.info.run_id, run.info.status, run.info.end_time) == ("parents", "RUNNING", None)
