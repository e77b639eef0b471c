"""trackd.search_runs(experiment_ids=...) finds the runs MLflow's finds in the same store."""

from __future__ import annotations

from pathlib import Path

import pytest
from fluent_helpers import fluent_env, mlflow_reader, quiet_result, run_child
from helpers import DaemonProcess

pytest.importorskip("mlflow")


def test_search_runs_takes_one_experiment_id_as_a_str_as_mlflow_does(daemon: DaemonProcess, store: Path) -> None:
    # This used to search experiments "1" and "2" for "12" (list("12")) and return [], silently.
    result = quiet_result(run_child(
        """
        import json, trackd
        ids = [trackd.create_experiment(f"sweep-{n}") for n in range(12)]
        for experiment_id in ids:
            with trackd.start_run(experiment_id=experiment_id):
                pass
        found = trackd.search_runs(experiment_ids=ids[-1], output_format="list")
        print(json.dumps({"experiment": ids[-1], "found": [run.info.run_id for run in found]}))
        """,
        fluent_env(daemon, store),
    ))
    # MLflow's fluent search_runs hands a str to MlflowClient.search_runs, which makes it [str].
    theirs = mlflow_reader(store).search_runs([str(result["experiment"])])
    assert len(theirs) == 1
    assert result["found"] == [run.info.run_id for run in theirs]
