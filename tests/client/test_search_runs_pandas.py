"""trackd.search_runs() returns MLflow's pandas DataFrame by default, as mlflow.search_runs() does.

It raised ("output_format='pandas' is not implemented"), so `import trackd as mlflow` broke the
call a benchmark suite reads its results with, and the advice was to import mlflow to read the
same ./mlruns. The frame is compared with MLflow's own for the same store: the same columns, the
same values and dtypes (MLflow orders a run's new columns in set order, so columns are matched by name).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fluent_helpers import fluent_env, quiet_result, run_child
from helpers import DaemonProcess

pd = pytest.importorskip("pandas")
mlflow = pytest.importorskip("mlflow")

SUITE = """
import json, sys, trackd
experiment = trackd.set_experiment("bench")
with trackd.start_run(run_name="a"):
    trackd.log_param("lr", "0.1")
    trackd.log_metric("loss", 0.5)
    trackd.log_metric("loss", 0.25, step=1)
with trackd.start_run(run_name="b"):
    trackd.log_params({"bs": 32, "opt": "sgd"})
    trackd.log_metrics({"acc": 0.9, "loss": float("nan")})
    trackd.set_tag("note", "second")
client = trackd.Client(tracking_uri=sys.argv[2])
running = client.create_run(experiment.experiment_id, run_name="c")  # never ended: end_time NaT
client.log_metric(running.info.run_id, "acc", 0.5)
client.flush()
trackd.flush()
frame = trackd.search_runs()
frame.to_pickle(sys.argv[1])
print(json.dumps({"experiment": experiment.experiment_id, "type": type(frame).__name__, "rows": len(frame)}))
"""


def test_search_runs_default_is_mlflows_dataframe(daemon: DaemonProcess, store: Path, tmp_path: Path) -> None:
    pickled = tmp_path / "frame.pkl"
    result = quiet_result(run_child(
        f"import sys; sys.argv[1:] = [{str(pickled)!r}, {str(store)!r}]\n" + SUITE, fluent_env(daemon, store),
    ))
    assert result["type"] == "DataFrame" and result["rows"] == 3, result
    ours = pd.read_pickle(pickled)
    mlflow.set_tracking_uri(str(store))
    try:
        theirs = mlflow.search_runs(experiment_ids=[str(result["experiment"])])
    finally:
        mlflow.set_tracking_uri(None)
    assert sorted(ours.columns) == sorted(theirs.columns)
    assert list(ours.columns[:6]) == ["run_id", "experiment_id", "status", "artifact_uri", "start_time", "end_time"]
    assert list(ours["run_id"]) == list(theirs["run_id"])  # newest first, as MLflow's
    pd.testing.assert_frame_equal(ours, theirs[list(ours.columns)])
    assert ours["end_time"].isna().sum() == 1 and ours["params.lr"].isna().sum() == 2


def test_search_runs_without_pandas_says_how_to_get_a_list(daemon: DaemonProcess, store: Path) -> None:
    result = run_child(
        """
        import sys, trackd
        sys.modules["pandas"] = None  # not installed
        with trackd.start_run():
            trackd.log_metric("loss", 1.0)
        print(len(trackd.search_runs(output_format="list")))
        try:
            trackd.search_runs()
        except ModuleNotFoundError as exc:
            print(exc.name, exc)
        try:
            trackd.search_runs(output_format="csv")
        except ValueError as exc:
            print(type(exc).__name__, exc)
        """,
        fluent_env(daemon, store),
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
    count, missing, unsupported = result.stdout.splitlines()
    assert count == "1"
    assert missing.startswith("pandas trackd.search_runs() returns a pandas DataFrame by default") and "output_format='list'" in missing
    assert unsupported == "InvalidArgument Unsupported output format: 'csv'. Supported string values are 'pandas' or 'list'."
