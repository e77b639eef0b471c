"""``set_terminated`` with a status MLflow does not know is refused at the call, as MLflow refuses it.

MLflow raises a bare ``Exception`` ("Could not get run status corresponding to string BOGUS. ...")
and leaves the run RUNNING; trackd raises ``InvalidArgument`` (a ValueError) naming the value and
the statuses it takes, and leaves the run RUNNING too. MLflow runs in this process on its own store.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from trackd import Client, InvalidArgument

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402


@pytest.mark.parametrize("status", ["BOGUS", "finished", "FINISHED ", 99])
def test_set_terminated_refuses_an_unknown_status_and_the_run_stays_running_as_in_mlflow(
    client: Client, tmp_path: Path, status: str | int
) -> None:
    theirs = MlflowClient(str(tmp_path / "mlflow-store"))
    their_run = theirs.create_run("0").info.run_id
    with pytest.raises(Exception, match="Could not get run status"):
        theirs.set_terminated(their_run, str(status))
    run_id = client.create_run().info.run_id
    with pytest.raises(InvalidArgument, match=r"Invalid run status .*expected one of RUNNING \(1\), SCHEDULED \(2\), FINISHED \(3\)"):
        client.set_terminated(run_id, status)
    ours, their_info = client.get_run(run_id).info, theirs.get_run(their_run).info
    assert (ours.status, ours.end_time) == (their_info.status, their_info.end_time) == ("RUNNING", None)
