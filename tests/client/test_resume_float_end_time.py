"""A run whose meta.yaml holds a float end_time (edited by hand, or by a tool) is resumed and ended.

MLflow's reader takes ``end_time: 1795867870391.5`` as it is (a float), as it takes a float
start_time. trackd read it the same, but ``start_run(run_id=...)`` raised InvalidArgument ("Invalid
timestamp of metric 'end_time': found 1795867870391.5 (float), expected an int") as it set the run
RUNNING again with its old end time, so a requeued job could not resume its run. (MLflow's own
resume raises TypeError there: its proto takes no float.) The run is made and read back with MLflow.
"""

from __future__ import annotations

import re
from pathlib import Path

from fluent_helpers import fluent_env, quiet_result, run_child
from helpers import DaemonProcess
from mlflow import MlflowClient

RESUME = """
import json, trackd
with trackd.start_run(run_id={run_id!r}) as run:
    trackd.log_metric("loss", 0.5, step=1)
print(json.dumps({{"status": run.info.status}}))
"""


def test_a_run_with_a_float_end_time_is_resumed_and_ended(daemon: DaemonProcess, store: Path) -> None:
    mlflow = MlflowClient(tracking_uri=str(store))
    run_id = mlflow.create_run("0").info.run_id
    mlflow.set_terminated(run_id, "FINISHED", end_time=1795867870391)
    meta = store / "0" / run_id / "meta.yaml"
    meta.write_text(re.sub(r"(?m)^end_time: 1795867870391$", "end_time: 1795867870391.5", meta.read_text()))
    assert mlflow.get_run(run_id).info.end_time == 1795867870391.5  # MLflow reads the float as it is

    result = run_child(RESUME.format(run_id=run_id), fluent_env(daemon, store))
    assert quiet_result(result)["status"] == "RUNNING"

    run = mlflow.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert type(run.info.end_time) is int and run.info.end_time > 1795867870391
    assert [m.value for m in mlflow.get_metric_history(run_id, "loss")] == [0.5]
