"""Acceptance: what a training process logs through trackd and its daemon, real MLflow reads back exactly.

A child process runs one scenario with the fluent API (an experiment by name; runs with params,
tags, metrics including NaN, +-inf, 1e20 and negative steps, nested keys, unicode, artifacts, and
the statuses FINISHED, FAILED and KILLED). Then ``mlflow.MlflowClient`` reads the store and must
see the same values, steps, timestamps, tags and statuses, and the same as trackd's own reader.
"""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import DaemonProcess, child_env, run_python

from trackd import Client, ClientConfig

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import ViewType  # noqa: E402

T0 = 1_700_000_000_000
EXPERIMENT = "roundtrip"

# Each run: name, params, tags, metric points (key, value, timestamp_ms, step), text artifacts,
# how it ends, and the run (by name) it is nested under. The last point of each key has the
# highest step, so MLflow's "latest value" is that point.
RUNS: list[dict[str, Any]] = [
    {
        "name": "train",
        "params": {"lr": "0.01", "unicode": "héllo ✓ 日本", "nested/opt": "adam", "long": "x" * 6000},
        "tags": {"team": "ml", "note/deep": "ünï"},
        "metrics": [
            ["loss", 1.5, T0, -5], ["loss", math.nan, T0 + 1, -1], ["loss", math.inf, T0 + 2, 0], ["loss", 0.25, T0 + 3, 3],
            ["a/b", 1e20, T0 + 4, 1], ["a/b", -math.inf, T0 + 5, 2],
            ["nan_last", 1.0, T0 + 6, 0], ["nan_last", math.nan, T0 + 7, 1],
        ],
        "texts": {"notes/readme.md": "# héllo\n", "config.txt": "lr=0.01\n"},
        "end": "FINISHED",
        "parent": None,
    },
    {
        "name": "train/child",
        "params": {"fold": "1"},
        "tags": {},
        "metrics": [["val/loss", 0.5, T0 + 10, 0], ["val/loss", 0.4, T0 + 11, 1]],
        "texts": {},
        "end": "FINISHED",
        "parent": "train",
    },
    {
        "name": "crashed",
        "params": {"seed": "7"},
        "tags": {"kind": "fails"},
        "metrics": [["loss", 2.0, T0 + 20, 0]],
        "texts": {"log.txt": "Traceback...\n"},
        "end": "FAILED",
        "parent": None,
    },
    {
        "name": "stopped",
        "params": {},
        "tags": {},
        "metrics": [["loss", -0.0, T0 + 30, -(2**40)]],
        "texts": {},
        "end": "KILLED",
        "parent": None,
    },
]
MODEL_BYTES = bytes(range(256)) * 64

CHILD = """
import json, os, sys, tempfile, trackd

scenario = json.loads(os.environ["SCENARIO"])
experiment = trackd.set_experiment(scenario["experiment"])
model = os.path.join(tempfile.mkdtemp(), "weights.bin")
with open(model, "wb") as file:
    file.write(bytes(range(256)) * 64)
ids = {}
for spec in scenario["runs"]:
    run = trackd.start_run(run_name=spec["name"], tags=spec["tags"], parent_run_id=ids.get(spec["parent"]))
    ids[spec["name"]] = run.info.run_id
    trackd.log_params(spec["params"])
    for key, value, timestamp, step in spec["metrics"]:
        trackd.log_metric(key, value, step=step, timestamp=timestamp)
    for path, text in spec["texts"].items():
        trackd.log_text(text, path)
    if spec["name"] == "train":
        trackd.log_artifact(model, artifact_path="model")
        trackd.log_dict({"layers": [64, 64], "act": "relu"}, "model/config.json")
    if spec["end"] == "FAILED":
        try:
            with run:
                raise RuntimeError("training diverged")
        except RuntimeError:
            pass
    else:
        trackd.end_run(spec["end"])
print(json.dumps({"experiment_id": experiment.experiment_id, "ids": ids}))
"""


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


@pytest.fixture
def scenario(daemon: DaemonProcess, store: Path) -> dict[str, Any]:
    """Run the scenario in a child process; return the experiment id and run ids it printed."""
    env = child_env(daemon.paths.socket, TRACKD_TRACKING_URI=str(store), TRACKD_AUTOSTART="0")
    env["SCENARIO"] = json.dumps({"experiment": EXPERIMENT, "runs": RUNS})
    result = run_python(textwrap.dedent(CHILD), env)
    assert (result.returncode, result.stderr) == (0, "")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


@pytest.fixture
def trackd_client(daemon: DaemonProcess, store: Path) -> Iterator[Client]:
    with Client(store, config=ClientConfig(socket_path=daemon.paths.socket, autostart=False)) as client:
        yield client


def test_mlflow_finds_the_experiment_by_name(scenario: dict[str, Any], store: Path, trackd_client: Client) -> None:
    client = MlflowClient(tracking_uri=str(store))
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None and experiment.experiment_id == scenario["experiment_id"]
    assert {e.name: e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)} == {
        "Default": "0",
        EXPERIMENT: scenario["experiment_id"],
    }
    ours = trackd_client.get_experiment(scenario["experiment_id"])
    assert (experiment.artifact_location, experiment.lifecycle_stage, experiment.creation_time) == (
        ours.artifact_location, ours.lifecycle_stage, ours.creation_time,
    )


@pytest.mark.parametrize("spec", RUNS, ids=[r["name"] for r in RUNS])
def test_mlflow_reads_each_run_as_logged(scenario: dict[str, Any], store: Path, trackd_client: Client, spec: dict[str, Any]) -> None:
    client = MlflowClient(tracking_uri=str(store))
    run_id = scenario["ids"][spec["name"]]
    run = client.get_run(run_id)
    assert (run.info.experiment_id, run.info.run_name, run.info.status) == (scenario["experiment_id"], spec["name"], spec["end"])
    assert run.info.end_time is not None and run.info.end_time >= run.info.start_time
    assert run.data.params == spec["params"]
    assert {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")} == spec["tags"]
    assert run.data.tags["mlflow.runName"] == spec["name"]
    parent = spec["parent"] and scenario["ids"][spec["parent"]]
    assert run.data.tags.get("mlflow.parentRunId") == parent
    latest = {key: value for key, value, _, _ in spec["metrics"]}
    assert run.data.metrics.keys() == latest.keys()
    assert all(_same(run.data.metrics[k], v) for k, v in latest.items())
    for key in latest:
        history = client.get_metric_history(run_id, key)
        expected = [(v, ts, step) for k, v, ts, step in spec["metrics"] if k == key]
        assert [(m.timestamp, m.step) for m in history] == [(ts, step) for _, ts, step in expected]
        assert all(_same(m.value, v) for m, (v, _, _) in zip(history, expected))


@pytest.mark.parametrize("spec", RUNS, ids=[r["name"] for r in RUNS])
def test_mlflow_and_trackd_read_the_same_run(scenario: dict[str, Any], store: Path, trackd_client: Client, spec: dict[str, Any]) -> None:
    run_id = scenario["ids"][spec["name"]]
    theirs = MlflowClient(tracking_uri=str(store)).get_run(run_id)
    ours = trackd_client.get_run(run_id)
    fields = ("run_id", "experiment_id", "run_name", "user_id", "status", "start_time", "end_time", "artifact_uri", "lifecycle_stage")
    assert {f: getattr(theirs.info, f) for f in fields} == {f: getattr(ours.info, f) for f in fields}
    # MLflow's status is a plain str ("FINISHED"); this used to be an IntEnum that printed as 3.
    assert type(theirs.info.status) is type(ours.info.status) is str
    assert (theirs.data.params, theirs.data.tags) == (ours.data.params, ours.data.tags)
    assert theirs.data.metrics.keys() == ours.data.metrics.keys()
    assert all(_same(theirs.data.metrics[k], ours.data.metrics[k]) for k in ours.data.metrics)


def test_mlflow_search_runs_finds_every_run_in_trackds_order(scenario: dict[str, Any], store: Path, trackd_client: Client) -> None:
    found = MlflowClient(tracking_uri=str(store)).search_runs([scenario["experiment_id"]])
    assert {r.info.run_id for r in found} == set(scenario["ids"].values())
    assert [r.info.run_id for r in found] == [r.info.run_id for r in trackd_client.search_runs(scenario["experiment_id"])]
    failed = MlflowClient(tracking_uri=str(store)).search_runs([scenario["experiment_id"]], "attributes.status = 'FAILED'")
    assert [r.info.run_name for r in failed] == ["crashed"]


def test_mlflow_lists_and_downloads_the_artifacts(scenario: dict[str, Any], store: Path, tmp_path: Path) -> None:
    client = MlflowClient(tracking_uri=str(store))
    run_id = scenario["ids"]["train"]
    root = {(a.path, a.is_dir) for a in client.list_artifacts(run_id)}
    assert root == {("notes", True), ("config.txt", False), ("model", True)}
    model = {a.path: a.file_size for a in client.list_artifacts(run_id, "model")}
    assert model == {"model/weights.bin": len(MODEL_BYTES), "model/config.json": len(json.dumps({"layers": [64, 64], "act": "relu"}, indent=2))}
    local = Path(client.download_artifacts(run_id, "", str(tmp_path)))
    assert (local / "model" / "weights.bin").read_bytes() == MODEL_BYTES
    assert (local / "notes" / "readme.md").read_text(encoding="utf-8") == "# héllo\n"
    assert json.loads((local / "model" / "config.json").read_text()) == {"layers": [64, 64], "act": "relu"}
    assert client.list_artifacts(scenario["ids"]["stopped"]) == []


@pytest.mark.parametrize("path", [None, "model", "notes", "config.txt"])
def test_mlflow_and_trackd_list_the_same_artifacts(scenario: dict[str, Any], store: Path, trackd_client: Client, path: str | None) -> None:
    # trackd's list_artifacts used to return bare path strings.
    run_id = scenario["ids"]["train"]
    theirs = MlflowClient(tracking_uri=str(store)).list_artifacts(run_id, path)
    ours = trackd_client.list_artifacts(run_id, path)
    assert [(a.path, a.is_dir, a.file_size) for a in ours] == [(a.path, a.is_dir, a.file_size) for a in theirs]


def test_every_run_meta_yaml_has_run_uuid_for_mlflow_2_readers(scenario: dict[str, Any], store: Path) -> None:
    for run_id in scenario["ids"].values():
        [meta] = store.glob(f"{scenario['experiment_id']}/{run_id}/meta.yaml")
        fields = yaml.safe_load(meta.read_text())
        assert fields["run_uuid"] == fields["run_id"] == run_id
