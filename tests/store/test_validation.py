"""Every validation rule in one table: MLflow's rules, stricter where MLflow cannot read back what it wrote."""

from __future__ import annotations

import fractions
import math
import os
from collections.abc import Callable

import pytest

from trackd.errors import InvalidArgument
from trackd.store import (
    RunStatus,
    validate_artifact_path,
    validate_experiment_id,
    validate_experiment_name,
    validate_key,
    validate_metric_value,
    validate_param_value,
    validate_run_id,
    validate_run_status,
    validate_step,
    validate_store_root,
    validate_tag_value,
    validate_timestamp,
)


class FakeNumpyFloat(float):
    """Stands in for numpy.float64, a float subclass."""


class FakeNumpyInt:
    """Stands in for numpy.int64: not an int, but has __index__."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value


def metric_key(key: object) -> object:
    return validate_key(key, kind="metric")


REJECTED: list[tuple[Callable[[object], object], object, str]] = [
    (metric_key, "../x", "'../x'"),
    (metric_key, "/abs", "'/abs'"),
    (metric_key, "a//b", "'a//b'"),
    (metric_key, "a/./b", "'a/./b'"),
    (metric_key, "a/", "'a/'"),
    (metric_key, "", "metric key ''"),
    (metric_key, "..foo", "'..foo'"),
    (metric_key, "x\n", "'x\\n'"),
    (metric_key, "a\x00", "'a\\x00'"),
    (metric_key, "a b!", "only letters, digits"),
    (metric_key, "a\\b", "'a\\\\b'"),
    (metric_key, "k" * 251, "251 characters"),
    (metric_key, 5, "expected a str"),
    (metric_key, None, "expected a str"),
    (lambda v: validate_metric_value("loss", v), "one", "metric 'loss'"),
    (lambda v: validate_metric_value("loss", v), None, "metric 'loss'"),
    (lambda v: validate_metric_value("loss", v), 1 + 2j, "metric 'loss'"),
    (lambda v: validate_metric_value("loss", v), 10**400, "too large"),
    (lambda v: validate_step("loss", v), 1.5, "step of metric 'loss'"),
    (lambda v: validate_step("loss", v), True, "step of metric 'loss'"),
    (lambda v: validate_step("loss", v), 2**63, "step of metric 'loss'"),
    (lambda v: validate_step("loss", v), -(2**63) - 1, "step of metric 'loss'"),
    (lambda v: validate_step("loss", v), "3", "step of metric 'loss'"),
    (lambda v: validate_timestamp("loss", v), -1, "timestamp of metric 'loss'"),
    (lambda v: validate_timestamp("loss", v), 1.7e12, "timestamp of metric 'loss'"),
    (lambda v: validate_timestamp("loss", v), 2**63, "timestamp of metric 'loss'"),
    (lambda v: validate_param_value("lr", v), "x" * 6001, "param 'lr'"),
    (lambda v: validate_param_value("lr", v), "\ud800", "param 'lr'"),
    (lambda v: validate_tag_value("note", v), 42, "tag 'note'"),
    (validate_run_id, "", "run id ''"),
    (validate_run_id, "-abc", "run id '-abc'"),
    (validate_run_id, "a" * 257, "run id"),
    (validate_run_id, "abc\n", "run id 'abc\\n'"),
    (validate_experiment_id, "../1", "experiment id '../1'"),
    (validate_experiment_id, True, "experiment id True"),
    (validate_experiment_name, "", "experiment name ''"),
    (validate_experiment_name, "n" * 501, "501 characters"),
    (validate_artifact_path, "../escape", "'../escape'"),
    (validate_artifact_path, "/etc/passwd", "'/etc/passwd'"),
    (validate_artifact_path, "a/../b", "'a/../b'"),
    (validate_artifact_path, "a//b", "'a//b'"),
    (validate_artifact_path, ".", "'.'"),
    (validate_artifact_path, "dir/", "'dir/'"),
    (validate_artifact_path, "", "artifact path ''"),
    (validate_artifact_path, "a\x00b", "NUL"),
    (validate_run_status, 0, "run status 0"),
    (validate_run_status, "DONE", "run status 'DONE'"),
    (validate_run_status, True, "run status True"),
]


@pytest.mark.parametrize(("validate", "value", "named"), REJECTED)
def test_invalid_value_is_rejected_with_a_message_naming_it(
    validate: Callable[[object], object], value: object, named: str
) -> None:
    with pytest.raises(InvalidArgument) as info:
        validate(value)
    assert named in str(info.value)
    assert str(info.value).endswith(".")


ACCEPTED: list[tuple[Callable[[object], object], object, object]] = [
    (metric_key, "a/b", "a/b"),
    (metric_key, "héllo", "héllo"),
    (metric_key, " a", " a"),
    (metric_key, "a:b-c.d_e", "a:b-c.d_e"),
    (metric_key, "k" * 250, "k" * 250),
    (lambda v: validate_metric_value("m", v), 7, 7.0),
    (lambda v: validate_metric_value("m", v), 0.5, 0.5),
    (lambda v: validate_metric_value("m", v), float("inf"), float("inf")),
    (lambda v: validate_metric_value("m", v), FakeNumpyFloat(2.5), 2.5),
    (lambda v: validate_metric_value("m", v), fractions.Fraction(1, 4), 0.25),
    (lambda v: validate_step("m", v), -5, -5),
    (lambda v: validate_step("m", v), 2**63 - 1, 2**63 - 1),
    (lambda v: validate_step("m", v), FakeNumpyInt(3), 3),
    (lambda v: validate_timestamp("m", v), 0, 0),
    (lambda v: validate_timestamp("m", v), FakeNumpyInt(1700000000000), 1700000000000),
    (lambda v: validate_param_value("lr", v), "x" * 6000, "x" * 6000),
    (lambda v: validate_param_value("lr", v), "é" * 6000, "é" * 6000),
    (lambda v: validate_param_value("lr", v), "", ""),
    (lambda v: validate_tag_value("t", v), "y" * 8000, "y" * 8000),
    # FileStore.set_tag checks no length: only log_batch bounds a tag (the client truncates there).
    (lambda v: validate_tag_value("t", v), "y" * 9000, "y" * 9000),
    (validate_run_id, "3bd6535c03924d04ac5f56e79c702612", "3bd6535c03924d04ac5f56e79c702612"),
    (validate_experiment_id, "680841689471648142", "680841689471648142"),
    (validate_experiment_id, 0, "0"),
    (validate_experiment_name, "exp A ✓", "exp A ✓"),
    (validate_artifact_path, "plots/loss.png", "plots/loss.png"),
    (validate_run_status, 3, RunStatus.FINISHED),
    (validate_run_status, "KILLED", RunStatus.KILLED),
]


@pytest.mark.parametrize(("validate", "value", "expected"), ACCEPTED)
def test_valid_value_is_returned_in_the_form_the_store_writes(
    validate: Callable[[object], object], value: object, expected: object
) -> None:
    result = validate(value)
    assert result == expected
    assert type(result) is type(expected)


def test_nan_metric_value_is_accepted() -> None:
    assert math.isnan(validate_metric_value("m", float("nan")))


@pytest.mark.parametrize("kind", ["param", "metric", "tag"])
def test_key_message_names_the_kind_of_key(kind: str) -> None:
    with pytest.raises(InvalidArgument, match=f"Invalid {kind} key 'a b!'"):
        validate_key("a b!", kind=kind)


@pytest.mark.parametrize("root", ["/x/artifacts/mlruns", "/data/artifacts"])
def test_store_root_below_a_folder_named_artifacts_is_refused(root: str) -> None:
    with pytest.raises(InvalidArgument, match="not found") as info:
        validate_store_root(root)
    assert repr(root) in str(info.value)


def test_store_root_is_returned_absolute(tmp_path: os.PathLike[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert validate_store_root("mlruns") == os.path.join(os.fspath(tmp_path), "mlruns")
