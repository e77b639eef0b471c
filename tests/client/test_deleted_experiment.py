"""A run cannot be started in a deleted experiment: refused at the call, in MLflow's words.

The experiment is deleted by MLflow itself (``MlflowClient.delete_experiment`` moves it to
``.trash``), as a user cleaning up in the UI or a notebook does while a sweep script still names it.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from helpers import DaemonProcess, child_env, run_python

import trackd
from trackd import InvalidArgument

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import ViewType  # noqa: E402

REFUSED = "Could not create run under non-active experiment with ID {id}."


def _deleted_experiment(store: Path) -> str:
    client = MlflowClient(str(store))
    experiment_id: str = client.create_experiment("gone")
    client.delete_experiment(experiment_id)
    return experiment_id


def test_start_run_in_a_deleted_experiment_raises_at_the_call_and_makes_no_run(daemon: DaemonProcess, store: Path) -> None:
    # This used to return an ActiveRun the job then logged to; the daemon refused the run and
    # everything logged to it, reported only by the next flush() (or at exit) as a DeliveryError.
    experiment_id = _deleted_experiment(store)
    code = f"""
        import trackd
        try:
            trackd.start_run(experiment_id={experiment_id!r})
        except trackd.InvalidArgument as exc:
            print("refused:", exc)
        print("active:", trackd.active_run())
    """
    env = child_env(daemon.paths.socket, TRACKD_AUTOSTART="0", TRACKD_TRACKING_URI=str(store))
    result = run_python(textwrap.dedent(code), env)
    assert result.returncode == 0, result.stderr
    assert f"refused: {REFUSED.format(id=experiment_id)}\nactive: None\n" == result.stdout
    assert "trackd:" not in result.stderr  # nothing was refused later
    assert MlflowClient(str(store)).search_runs([experiment_id], run_view_type=ViewType.ALL) == []


def test_client_create_run_in_a_deleted_experiment_raises(daemon: DaemonProcess, store: Path) -> None:
    experiment_id = _deleted_experiment(store)
    with trackd.Client(store) as client:
        with pytest.raises(InvalidArgument, match=REFUSED.format(id=experiment_id)):
            client.create_run(experiment_id)
        client.flush()  # nothing was sent for the daemon to refuse
    assert MlflowClient(str(store)).search_runs([experiment_id], run_view_type=ViewType.ALL) == []
