"""``start_run(parent_run_id=...)`` checks the parent as MLflow's does, without waiting on the daemon.

Each scenario runs in a fresh interpreter (the fluent API keeps module state) and is checked
from outside: exit code, stderr, and the store as MLflow reads it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import DaemonProcess, child_env, run_python, wait_for

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import ViewType  # noqa: E402

MISSING = "0123456789abcdef0123456789abcdef"


def _run(code: str, daemon: DaemonProcess, store: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    env = child_env(daemon.paths.socket, TRACKD_AUTOSTART="0", TRACKD_TRACKING_URI=str(store), **extra)
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID", "RANK"):
        env.pop(name, None)
    return run_python(textwrap.dedent(code), env, timeout=60.0)


def _parent(store: Path, experiment: str | None = None, *, deleted: bool = False) -> str:
    """A run made by MLflow itself in ``store``, deleted if asked."""
    client = MlflowClient(str(store))
    experiment_id = client.create_experiment(experiment) if experiment else "0"
    run_id: str = client.create_run(experiment_id).info.run_id
    client.set_terminated(run_id)
    if deleted:
        client.delete_run(run_id)
    return run_id


@pytest.mark.parametrize(
    ("parent", "error"),
    [
        ("missing", f"RunNotFound: Cannot start a run under parent run '{MISSING}': no run has that id in the store at"),
        ("deleted", "InvalidArgument: Cannot start run under parent run with ID {id} because it is in the deleted state."),
    ],
)
def test_a_parent_run_id_that_is_missing_or_deleted_is_refused_and_starts_no_run(
    parent: str, error: str, daemon: DaemonProcess, store: Path
) -> None:
    # trackd took any id: the new run's mlflow.parentRunId named a run that did not exist (a typo,
    # an id from another store), where MLflow's start_run raises "Run '...' not found".
    parent_id = MISSING if parent == "missing" else _parent(store, deleted=True)
    result = _run(f"import trackd\ntrackd.start_run(parent_run_id={parent_id!r})\n", daemon, store)
    assert result.returncode == 1 and error.format(id=parent_id) in result.stderr, result.stderr
    runs = MlflowClient(str(store)).search_runs(["0"], run_view_type=ViewType.ALL)
    assert [run.info.run_id for run in runs] == ([] if parent == "missing" else [parent_id])


def test_a_parent_in_another_experiment_is_taken_as_mlflow_takes_it(daemon: DaemonProcess, store: Path) -> None:
    parent_id = _parent(store, "elsewhere")
    result = _run(
        f"import json, trackd\nwith trackd.start_run(parent_run_id={parent_id!r}) as run:\n"
        "    print(json.dumps(run.info.run_id))\n",
        daemon, store,
    )
    assert result.returncode == 0, result.stderr
    child = MlflowClient(str(store)).get_run(json.loads(result.stdout))
    assert (child.info.experiment_id, child.data.tags["mlflow.parentRunId"]) == ("0", parent_id)


# Parents this process made while the daemon is stopped: none is in the store when start_run
# checks it, and waiting for the daemon would never return. Prints the (parent, child) id pairs.
UNWRITTEN_PARENTS = """
import json, trackd
pairs = []
with trackd.start_run() as active:                       # the active run
    with trackd.start_run(parent_run_id=active.info.run_id, nested=True) as child:
        pairs.append((active.info.run_id, child.info.run_id))
ended = active.info.run_id                               # ended, spooled after TRACKD_EXIT_TIMEOUT
with trackd.start_run(parent_run_id=ended) as child:
    pairs.append((ended, child.info.run_id))
made = trackd.Client().create_run("0").info.run_id       # by another Client of the store
with trackd.start_run(parent_run_id=made) as child:
    pairs.append((made, child.info.run_id))
print(json.dumps(pairs), flush=True)
"""


@pytest.mark.timeout(120)
def test_a_parent_this_process_made_is_taken_before_the_daemon_wrote_it(
    daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    daemon.signal(signal.SIGSTOP)
    try:
        result = _run(UNWRITTEN_PARENTS, daemon, store, TRACKD_EXIT_TIMEOUT="1", TRACKD_SPOOL_DIR=str(spool_dir))
    finally:
        daemon.signal(signal.SIGCONT)
    assert result.returncode == 0, result.stderr
    pairs = json.loads(result.stdout.strip().splitlines()[-1])
    sync = subprocess.run(
        [sys.executable, "-m", "trackd.cli", "sync", "--socket", str(daemon.paths.socket), "--spool-dir", str(spool_dir)],
        env=child_env(daemon.paths.socket), capture_output=True, text=True, timeout=60,
    )
    assert sync.returncode == 0, sync.stderr
    wait_for(lambda: daemon.status()["backlog_records"] == 0, 10, message="the daemon's backlog written")
    client = MlflowClient(str(store))
    assert [client.get_run(child).data.tags["mlflow.parentRunId"] for _, child in pairs] == [parent for parent, _ in pairs]
