"""StoreWriter: params, tags, run ends and artifacts, byte for byte as MLflow writes them; a failing item never stops the rest of a batch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from trackd.store import ArtifactWrite, ParamWrite, TagWrite, Termination, WriteBatch

from store_helpers import RUN_ID, START_MS, metrics, writer_with_run


def test_params_are_raw_utf8_and_immutable(tmp_path: Path) -> None:
    writer, run = writer_with_run(tmp_path)
    batch = WriteBatch(params=[ParamWrite("o1", RUN_ID, "lr", "0.001"), ParamWrite("o2", RUN_ID, "nested/u", "héllo ✓\n")])
    assert writer.write(batch) == []
    assert (run / "params" / "lr").read_bytes() == b"0.001"
    assert (run / "params" / "nested" / "u").read_bytes() == "héllo ✓\n".encode()
    failures = writer.write(
        WriteBatch(params=[ParamWrite("o3", RUN_ID, "lr", "0.001"), ParamWrite("o4", RUN_ID, "lr", "0.1")])
    )
    assert [f.origin for f in failures] == ["o4"]
    assert failures[0].message == (
        f"Changing param values is not allowed. Param with key='lr' was already logged with "
        f"value='0.001' for run ID='{RUN_ID}'. Attempted logging new value '0.1'."
    )
    assert (run / "params" / "lr").read_bytes() == b"0.001"
    assert sorted(os.listdir(run)) == ["artifacts", "meta.yaml", "metrics", "params", "tags"]


def test_one_failing_item_does_not_stop_the_others(tmp_path: Path) -> None:
    writer, run = writer_with_run(tmp_path)
    batch = WriteBatch(
        params=[ParamWrite("bad", RUN_ID, "../x", "1"), ParamWrite("good", RUN_ID, "p", "1")],
        tags=[TagWrite("missing-run", "f" * 32, "t", "v")],
        metrics=metrics("m", (1, 1.0, 0)).metrics,
    )
    failures = writer.write(batch)
    assert [f.origin for f in failures] == ["bad", "missing-run"]
    assert "not found" in failures[1].message
    assert (run / "params" / "p").read_bytes() == b"1"
    assert (run / "metrics" / "m").read_bytes() == b"1 1.0 0\n"
    assert not (tmp_path / run.parent.name / "x").exists()


def test_tag_set_delete_and_missing_delete(tmp_path: Path) -> None:
    writer, run = writer_with_run(tmp_path)
    assert writer.write(WriteBatch(tags=[TagWrite("o", RUN_ID, "t", "v"), TagWrite("o", RUN_ID, "t", "w")])) == []
    assert (run / "tags" / "t").read_bytes() == b"w"
    assert writer.write(WriteBatch(tags=[TagWrite("o", RUN_ID, "t", None)])) == []
    assert not (run / "tags" / "t").exists()
    failures = writer.write(WriteBatch(tags=[TagWrite("o", RUN_ID, "t", None)]))
    assert failures[0].message == f"No tag with name: t in run with id {RUN_ID}"


def test_run_name_tag_rewrites_meta(tmp_path: Path) -> None:
    writer, run = writer_with_run(tmp_path)
    assert writer.write(WriteBatch(tags=[TagWrite("o", RUN_ID, "mlflow.runName", "renamed")])) == []
    assert "run_name: renamed\n" in (run / "meta.yaml").read_text()
    assert (run / "tags" / "mlflow.runName").read_bytes() == b"renamed"


def test_termination_sets_status_and_end_time_and_later_writes_still_land(tmp_path: Path) -> None:
    writer, run = writer_with_run(tmp_path)
    assert writer.write(WriteBatch(terminations=[Termination("o", RUN_ID, 4, START_MS + 9)])) == []
    meta = (run / "meta.yaml").read_text()
    assert "status: 4\n" in meta and f"end_time: {START_MS + 9}\n" in meta and f"run_uuid: {RUN_ID}\n" in meta
    assert writer.write(metrics("late", (1, 1.0, 0))) == []  # MLflow allows writes to finished runs


@pytest.mark.parametrize(("before", "after"), [(4, 4), (5, 5), (1, 3)], ids=["failed", "killed", "running"])
def test_a_termination_that_keeps_failures_finishes_only_a_run_nobody_failed(tmp_path: Path, before: int, after: int) -> None:
    # The fluent API's default end of a run (its owner leaving the block cleanly) must not hide
    # that another rank or worker failed it; an explicit set_terminated still sets any status.
    writer, run = writer_with_run(tmp_path)
    assert writer.write(WriteBatch(terminations=[Termination("o", RUN_ID, before, START_MS + 5)])) == []
    assert writer.write(WriteBatch(terminations=[Termination("o", RUN_ID, 3, START_MS + 9, keep_failure=True)])) == []
    assert f"status: {after}\n" in (run / "meta.yaml").read_text()
    assert writer.write(WriteBatch(terminations=[Termination("o", RUN_ID, 3, START_MS + 9)])) == []
    assert "status: 3\n" in (run / "meta.yaml").read_text()


def test_writes_to_a_deleted_run_fail(tmp_path: Path) -> None:
    writer, run = writer_with_run(tmp_path)
    meta = run / "meta.yaml"
    meta.write_text(meta.read_text().replace("lifecycle_stage: active", "lifecycle_stage: deleted"))
    failures = writer.write(metrics("m", (1, 1.0, 0)))
    assert failures[0].message == f"The run {RUN_ID} must be in 'active' lifecycle_stage."
    assert not (run / "metrics" / "m").exists()


def test_artifacts_from_content_and_from_a_source_file(tmp_path: Path) -> None:
    writer, run = writer_with_run(tmp_path / "store")
    source = tmp_path / "model.bin"
    source.write_bytes(b"\x00weights")
    batch = WriteBatch(
        artifacts=[
            ArtifactWrite("o", RUN_ID, "notes/hello.txt", content=b"hello\n"),
            ArtifactWrite("o", RUN_ID, "model/model.bin", source_path=str(source)),
        ]
    )
    assert writer.write(batch) == []
    assert (run / "artifacts" / "notes" / "hello.txt").read_bytes() == b"hello\n"
    assert (run / "artifacts" / "model" / "model.bin").read_bytes() == b"\x00weights"
    assert sorted(os.listdir(run)) == ["artifacts", "meta.yaml", "metrics", "params", "tags"]


@pytest.mark.parametrize("path", ["../meta.yaml", "/tmp/evil", "a/../../x", "link/evil.txt", "link"])
def test_artifact_path_escapes_are_refused_and_write_nothing_outside(tmp_path: Path, path: str) -> None:
    writer, run = writer_with_run(tmp_path / "store")
    outside = tmp_path / "outside"
    outside.mkdir()
    (run / "artifacts" / "link").symlink_to(outside)
    before = (run / "meta.yaml").read_bytes()
    failures = writer.write(WriteBatch(artifacts=[ArtifactWrite("o", RUN_ID, path, content=b"x")]))
    if path == "link":  # replacing the link itself is confined: the link becomes a file
        assert failures == [] and not list(outside.iterdir())
        return
    assert len(failures) == 1 and "Invalid artifact path" in failures[0].message
    assert list(outside.iterdir()) == []
    assert (run / "meta.yaml").read_bytes() == before


def test_artifact_needs_exactly_one_source(tmp_path: Path) -> None:
    writer, _ = writer_with_run(tmp_path)
    failures = writer.write(WriteBatch(artifacts=[ArtifactWrite("o", RUN_ID, "a.txt")]))
    assert "exactly one of content and source_path, got neither" in failures[0].message


def test_repeated_tag_writes_in_one_batch_leave_the_last_value_and_write_once(tmp_path: Path) -> None:
    writer, run = writer_with_run(tmp_path)
    tags = [TagWrite("o", RUN_ID, "epoch", str(i)) for i in range(1000)]
    tags += [TagWrite("o", RUN_ID, "gone", "x"), TagWrite("o", RUN_ID, "gone", None)]
    assert writer.write(WriteBatch(tags=tags)) == []
    assert (run / "tags" / "epoch").read_bytes() == b"999"
    # Deleting a tag set earlier in the same batch finds it, as it would one batch later.
    assert not (run / "tags" / "gone").exists()
