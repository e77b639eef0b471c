"""``trackd.entities``: MLflow's ``mlflow.entities`` for a script ported with ``import trackd as mlflow``.

``mlflow.entities.Param(...)`` and ``RunTag(...)`` for ``log_batch`` were an AttributeError: trackd had
``trackd.Metric`` only. The module gives trackd's own classes under MLflow's names, loaded on first access.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mlflow.entities
import pytest
from helpers import inherited_env
from mlflow import MlflowClient

import trackd
import trackd.store
from trackd import Client


def test_each_name_of_trackd_entities_is_mlflows_and_the_class_trackd_uses() -> None:
    assert set(trackd.entities.__all__) <= set(mlflow.entities.__all__)
    assert {"Metric", "Param", "RunTag", "Run", "RunInfo", "RunData", "Experiment", "RunStatus", "ViewType"} <= set(trackd.entities.__all__)
    # Not copies: what the reads return, and trackd.Metric itself.
    assert all(getattr(trackd.entities, name) is getattr(trackd.store, name) for name in trackd.entities.__all__)
    assert trackd.entities.Metric is trackd.Metric
    assert int(trackd.entities.RunStatus.FINISHED) == mlflow.entities.RunStatus.FINISHED
    assert int(trackd.entities.ViewType.ALL) == mlflow.entities.ViewType.ALL


BATCH = """
import json, sys, time
entities = sys.argv[1]
if entities == "trackd":
    import trackd as mlflow
    from trackd.entities import Metric, Param, RunTag
    client = mlflow.MlflowClient(sys.argv[2])
else:
    import mlflow
    from mlflow.entities import Metric, Param, RunTag
    client = mlflow.MlflowClient(sys.argv[2])
run_id = client.create_run("0").info.run_id
client.log_batch(
    run_id,
    metrics=[Metric("loss", 0.5, 1_000, 3), Metric(key="acc", value=1, timestamp=2_000, step=0)],
    params=[Param("lr", 0.1), mlflow.entities.Param(key="layers", value="4")],
    tags=[RunTag("team", "vision"), mlflow.entities.RunTag("epochs", "7")],
)
client.set_terminated(run_id)
print(run_id)
"""


def test_log_batch_takes_trackd_entities_as_mlflow_takes_its_own(daemon: object, store: Path, tmp_path: Path) -> None:
    # The same script, run with trackd's entities and with MLflow's on MLflow's own store, reads back the same.
    env = {**inherited_env(), "TRACKD_AUTOSTART": "0", "MLFLOW_ALLOW_FILE_STORE": "true", "MLFLOW_DISABLE_TELEMETRY": "true"}
    read = {}
    for entities, root in (("trackd", store), ("mlflow", tmp_path / "mlflow-runs")):
        done = subprocess.run([sys.executable, "-c", BATCH, entities, str(root)], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        reader = MlflowClient(tracking_uri=str(root))
        run = reader.get_run(done.stdout.strip())
        history = [(m.key, m.value, m.timestamp, m.step) for key in ("loss", "acc") for m in reader.get_metric_history(run.info.run_id, key)]
        user_tags = {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")}
        read[entities] = (run.data.params, user_tags, history, run.info.status)
    assert read["trackd"] == read["mlflow"]
    assert read["trackd"][0] == {"lr": "0.1", "layers": "4"}


def test_log_batch_takes_mlflows_own_entities(client: Client) -> None:
    run_id = client.create_run().info.run_id
    client.log_batch(run_id, params=[mlflow.entities.Param("lr", "0.1")], tags=[mlflow.entities.RunTag("team", "vision")])
    client.flush()
    run = MlflowClient(tracking_uri=client.tracking_uri).get_run(run_id)
    assert (run.data.params, run.data.tags["team"]) == ({"lr": "0.1"}, "vision")


def test_import_trackd_loads_neither_the_entities_nor_the_store() -> None:
    # `import trackd` stays the fluent functions alone (benchmarks/bench_short_processes.py); entities load on first access.
    code = (
        "import sys, trackd; names = {'trackd.entities', 'trackd.store'}; before = names & set(sys.modules); "
        "trackd.entities.Param('lr', '0.1'); print(sorted(before), sorted(names & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[0] == "[] ['trackd.entities', 'trackd.store']"


def test_run_status_helpers_answer_as_mlflows() -> None:
    # `mlflow.entities.RunStatus.to_string(run.info.status)`-style code raised AttributeError.
    from mlflow.entities import RunStatus as MlflowRunStatus

    from trackd.entities import RunStatus

    assert RunStatus.all_status() == MlflowRunStatus.all_status()
    for status in MlflowRunStatus.all_status():
        assert RunStatus.to_string(status) == MlflowRunStatus.to_string(status)
        assert RunStatus.is_terminated(status) == MlflowRunStatus.is_terminated(status)
        assert RunStatus.from_string(MlflowRunStatus.to_string(status)) == status
    with pytest.raises(ValueError, match=r"Could not get run status corresponding to string DONE\. Valid run status strings: "):
        RunStatus.from_string("DONE")
    with pytest.raises(ValueError, match=r"Could not get string corresponding to run status 9\. Valid run statuses: \[1, 2, 3, 4, 5\]"):
        RunStatus.to_string(9)
