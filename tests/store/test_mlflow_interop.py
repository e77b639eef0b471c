"""Real MLflow reads what StoreWriter writes, StoreReader reads what MLflow writes, and both write the same files."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
from store_helpers import RUN_ID, START_MS, new_run, writer_with_run

from trackd.store import (
    ArtifactWrite,
    MetricAppend,
    ParamWrite,
    StoreReader,
    StoreWriter,
    TagWrite,
    Termination,
    WriteBatch,
)

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import ViewType  # noqa: E402

POINTS = [(START_MS + 1, 0.5, 0), (START_MS + 2, math.nan, 1), (START_MS + 3, math.inf, -3), (START_MS + 4, 1e20, 2**40)]


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def test_mlflow_reads_what_trackd_writes(tmp_path: Path) -> None:
    root = tmp_path / "mlruns"
    writer, run = writer_with_run(root)
    batch = WriteBatch(
        params=[ParamWrite("o", RUN_ID, "unicode", "héllo ✓"), ParamWrite("o", RUN_ID, "nested/lr", "0.1")],
        tags=[TagWrite("o", RUN_ID, "team", "ml")],
        metrics={
            (RUN_ID, "loss"): MetricAppend(RUN_ID, "loss", list(POINTS), ["o"]),
            (RUN_ID, "acc/train"): MetricAppend(RUN_ID, "acc/train", [(START_MS, 0.9, 1)], ["o"]),
        },
        artifacts=[ArtifactWrite("o", RUN_ID, "cfg/config.json", content=b"{}")],
        terminations=[Termination("o", RUN_ID, 3, START_MS + 10)],
    )
    assert writer.write(batch) == []
    client = MlflowClient(tracking_uri=str(root))
    got = client.get_run(RUN_ID)
    assert (got.info.status, got.info.end_time, got.info.run_name, got.info.user_id) == ("FINISHED", START_MS + 10, "run-a", "alice")
    assert got.data.params == {"unicode": "héllo ✓", "nested/lr": "0.1"}
    assert got.data.tags["team"] == "ml" and got.data.tags["mlflow.runName"] == "run-a"
    assert got.data.metrics["acc/train"] == 0.9 and got.data.metrics["loss"] == 1e20
    history = client.get_metric_history(RUN_ID, "loss")
    assert [(m.timestamp, m.step) for m in history] == [(ts, step) for ts, _, step in POINTS]
    assert all(_same(m.value, v) for m, (_, v, _) in zip(history, POINTS))
    experiment_id = run.parent.name
    assert [r.info.run_id for r in client.search_runs([experiment_id])] == [RUN_ID]
    names = {e.name for e in client.search_experiments(view_type=ViewType.ALL)}
    assert names == {"Default", "exp"}
    assert [a.path for a in client.list_artifacts(RUN_ID)] == ["cfg"]
    assert [a.path for a in client.list_artifacts(RUN_ID, "cfg")] == ["cfg/config.json"]


def _mlflow_scenario(root: Path) -> tuple[str, str]:
    # A file:// URI, as the fluent API uses: with a plain path MLflow writes plain-path
    # artifact locations, while trackd always writes file:// URIs.
    client = MlflowClient(tracking_uri=root.as_uri())
    experiment_id = client.create_experiment("exp", tags={"note": "multi\nline"})
    run = client.create_run(experiment_id, run_name="run-a", tags={"mlflow.user": "alice"})
    run_id = run.info.run_id
    client.log_param(run_id, "unicode", "héllo ✓")
    client.set_tag(run_id, "team", "ml")
    for ts, value, step in POINTS:
        client.log_metric(run_id, "loss", value, timestamp=ts, step=step)
    client.log_metric(run_id, "acc/train", 0.9, timestamp=START_MS, step=1)
    client.set_terminated(run_id, status="KILLED", end_time=START_MS + 10)
    return experiment_id, run_id


def test_trackd_reads_what_mlflow_writes(tmp_path: Path) -> None:
    root = tmp_path / "mlruns"
    experiment_id, run_id = _mlflow_scenario(root)
    client = MlflowClient(tracking_uri=str(root))
    reader = StoreReader(root)
    expected, got = client.get_run(run_id), reader.get_run(run_id)
    assert (got.info.status, got.info.end_time, got.info.run_name, got.info.artifact_uri) == (
        expected.info.status, expected.info.end_time, expected.info.run_name, expected.info.artifact_uri
    )
    assert got.data.params == expected.data.params and got.data.tags == expected.data.tags
    assert got.data.metrics.keys() == expected.data.metrics.keys()
    assert all(_same(got.data.metrics[k], v) for k, v in expected.data.metrics.items())
    history = reader.get_metric_history(run_id, "loss")
    assert [(m.timestamp, m.step) for m in history] == [(m.timestamp, m.step) for m in client.get_metric_history(run_id, "loss")]
    assert [r.info.run_id for r in reader.search_runs([experiment_id])] == [run_id]
    assert reader.get_experiment(experiment_id).tags == {"note": "multi\nline"}
    assert reader.get_experiment_by_name("exp") is not None


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_trackd_and_mlflow_write_the_same_files(tmp_path: Path) -> None:
    mlflow_root, trackd_root = tmp_path / "by-mlflow", tmp_path / "by-trackd"
    experiment_id, run_id = _mlflow_scenario(mlflow_root)
    mlflow_files = _tree(mlflow_root)
    created = int(mlflow_files[f"{experiment_id}/meta.yaml"].split(b"creation_time: ")[1].split(b"\n")[0])
    start = int(mlflow_files[f"{experiment_id}/{run_id}/meta.yaml"].split(b"start_time: ")[1].split(b"\n")[0])

    writer = StoreWriter(trackd_root)
    new_id = writer.create_experiment("exp", tags={"note": "multi\nline"}, now_ms=created)
    os.rename(trackd_root / new_id, trackd_root / experiment_id)  # the same id, so the files compare
    (trackd_root / experiment_id / "meta.yaml").write_bytes(
        (trackd_root / experiment_id / "meta.yaml").read_bytes().replace(new_id.encode(), experiment_id.encode())
    )
    writer = StoreWriter(trackd_root)
    item = new_run(experiment_id, run_id)
    item = type(item)(item.origin, run_id, experiment_id, "alice", "run-a", start, {"mlflow.user": "alice"})
    batch = WriteBatch(
        new_runs=[item],
        params=[ParamWrite("o", run_id, "unicode", "héllo ✓")],
        tags=[TagWrite("o", run_id, "team", "ml")],
        metrics={
            (run_id, "loss"): MetricAppend(run_id, "loss", list(POINTS), ["o"]),
            (run_id, "acc/train"): MetricAppend(run_id, "acc/train", [(START_MS, 0.9, 1)], ["o"]),
        },
        terminations=[Termination("o", run_id, 5, START_MS + 10)],
    )
    assert writer.write(batch) == []
    trackd_files = _tree(trackd_root)
    mlflow_root_uri, trackd_root_uri = mlflow_root.as_uri().encode(), trackd_root.as_uri().encode()
    assert sorted(trackd_files) == sorted(mlflow_files)
    for name, data in mlflow_files.items():
        ours = trackd_files[name].replace(trackd_root_uri, mlflow_root_uri)
        if name == "0/meta.yaml":
            ours = ours.split(b"creation_time")[0] + data[data.index(b"creation_time"):]
            ours = ours.replace(ours.split(b"last_update_time: ")[1].split(b"\n")[0], data.split(b"last_update_time: ")[1].split(b"\n")[0])
        if name.endswith(f"{run_id}/meta.yaml"):
            ours = ours.replace(f"run_uuid: {run_id}\n".encode(), b"")
        assert ours == data, name


def test_every_run_meta_carries_run_uuid_for_mlflow_2(tmp_path: Path) -> None:
    writer, _ = writer_with_run(tmp_path, run_id="a" * 32)
    writer.write(WriteBatch(new_runs=[new_run("0", "b" * 32)], terminations=[Termination("o", "a" * 32, 3, START_MS)]))
    metas = list(tmp_path.glob("*/*/meta.yaml"))
    assert len(metas) == 2
    for meta in metas:
        assert f"run_uuid: {meta.parent.name}\n" in meta.read_text()


def test_a_remembered_experiment_name_follows_mlflows_rename_and_delete(tmp_path: Path) -> None:
    # The writer remembers a name it found (a lookup reads every experiment's meta.yaml); MLflow
    # renaming or deleting that experiment must not leave it answering with a stale id.
    root = tmp_path / "mlruns"
    writer = StoreWriter(root)
    experiment_id = writer.create_experiment("bench", now_ms=START_MS)
    assert writer.get_experiment_id_by_name("bench") == experiment_id
    client = MlflowClient(tracking_uri=str(root))
    client.rename_experiment(experiment_id, "bench-2")
    assert writer.get_experiment_id_by_name("bench") is None
    assert writer.get_experiment_id_by_name("bench-2") == experiment_id
    client.delete_experiment(experiment_id)
    assert writer.get_experiment_id_by_name("bench-2") is None
    client.restore_experiment(experiment_id)
    assert writer.get_experiment_id_by_name("bench-2") == experiment_id
    writer.close()
