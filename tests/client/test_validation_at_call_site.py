"""Every caller mistake raises at the call site, naming the item and what was expected, and writes nothing.

One table drives the whole file: each row is a bad call on an open ``trackd.Client`` with a live run.
After the call raises, the client flushes and the run's files must be byte for byte what they were.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import pytest
from helpers import DaemonProcess

from trackd import Client, ClientClosedError, ClientConfig, InvalidArgument, ParamChangedError
from trackd.errors import RunNotFound
from trackd.store import Metric

UNKNOWN_RUN_ID = "0" * 32
LONG_KEY = "k" * 251


class KeyValue(NamedTuple):
    """A param or tag for log_batch, as mlflow.entities.Param."""

    key: str
    value: object


@dataclass
class Scene:
    """An open client on ``store``, a run it created, and a scratch folder for files to log."""

    client: Client
    run_id: str
    store: Path
    scratch: Path

    def closed_client(self) -> Client:
        other = Client(self.store, config=self.client.config)
        other.close()
        return other


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def scene(daemon: DaemonProcess, store: Path, tmp_path: Path) -> Iterator[Scene]:
    config = ClientConfig(socket_path=daemon.paths.socket, autostart=False)
    with Client(store, config=config) as client:
        run_id = client.create_run(tags={"t": "1"}, run_name="table").info.run_id
        client.log_param(run_id, "fixed", "1")
        client.log_metric(run_id, "loss", 0.5, step=0)
        client.flush()
        scratch = tmp_path / "scratch"
        scratch.mkdir()
        (scratch / "f.txt").write_text("x")
        yield Scene(client, run_id, store, scratch)


@dataclass(frozen=True)
class Bad:
    """A bad call, the error it must raise, and text the message must contain (the item, what was expected)."""

    call: Callable[[Scene], object]
    error: type[Exception]
    names: tuple[str, ...]


def _metric(key: object = "loss", value: object = 1.0, step: object = 0, timestamp: object = None) -> Callable[[Scene], object]:
    return lambda s: s.client.log_metric(s.run_id, key, value, timestamp, step)  # type: ignore[arg-type]


def _text(artifact_file: str) -> Callable[[Scene], object]:
    return lambda s: s.client.log_text(s.run_id, "hello", artifact_file)


NOT_UTF8_NAME = os.fsdecode(b"notes-\xff.txt")  # "notes-\udcff.txt"
MUST_BE_UTF8 = "must be valid UTF-8"


def _without_truncation(call: Callable[[], object]) -> object:
    """``call()`` with MLFLOW_TRUNCATE_LONG_VALUES=false, as MLflow reads it at the call."""
    os.environ["MLFLOW_TRUNCATE_LONG_VALUES"] = "false"
    try:
        return call()
    finally:
        del os.environ["MLFLOW_TRUNCATE_LONG_VALUES"]


def _file(*paths: Path) -> Path:
    """Write each file (and its folder); return the last one's path, or their folder if more than one."""
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    return paths[-1] if len(paths) == 1 else paths[-1].parent


BAD_CALLS: dict[str, Bad] = {
    # Metric keys: MLflow's regex and path_not_unique, plus what MLflow lets through and then cannot use.
    "key-parent-dir": Bad(_metric(key="../x"), InvalidArgument, ("'../x'", "relative and normalized")),
    "key-absolute": Bad(_metric(key="/abs"), InvalidArgument, ("'/abs'", "relative and normalized")),
    "key-double-slash": Bad(_metric(key="a//b"), InvalidArgument, ("'a//b'", "relative and normalized")),
    "key-trailing-newline": Bad(_metric(key="x\n"), InvalidArgument, ("'x\\n'", "may contain only")),
    "key-nul": Bad(_metric(key="a\x00"), InvalidArgument, ("'a\\x00'", "may contain only")),
    "key-251-chars": Bad(_metric(key=LONG_KEY), InvalidArgument, ("251 characters", "at most 250")),
    "key-int": Bad(_metric(key=5), InvalidArgument, ("key 5", "expected a str")),
    "key-none": Bad(_metric(key=None), InvalidArgument, ("key None", "expected a str")),
    "key-bytes": Bad(_metric(key=b"loss"), InvalidArgument, ("b'loss'", "expected a str")),
    # Unhashable keys and run ids used to escape the hot path's set lookups as a bare TypeError.
    "key-list": Bad(_metric(key=["loss"]), InvalidArgument, ("key ['loss']", "expected a str")),
    "run-id-list": Bad(lambda s: s.client.log_metric([s.run_id], "loss", 1.0), InvalidArgument, ("run id ['", "expected a str")),  # type: ignore[arg-type]
    "metrics-run-id-list": Bad(lambda s: s.client.log_metrics([s.run_id], {"loss": 1.0}), InvalidArgument, ("run id ['",)),  # type: ignore[arg-type]
    "param-key-dict": Bad(lambda s: s.client.log_param(s.run_id, {"p": 1}, 1), InvalidArgument, ("param key {'p': 1}", "expected a str")),  # type: ignore[arg-type]
    "tag-run-id-list": Bad(lambda s: s.client.set_tag([s.run_id], "t", 1), InvalidArgument, ("run id ['",)),  # type: ignore[arg-type]
    "metrics-step-list": Bad(lambda s: s.client.log_metrics(s.run_id, {"loss": 1.0}, step=[1]), InvalidArgument, ("step of metric 'loss'", "[1]")),  # type: ignore[arg-type]
    "param-key-bad": Bad(lambda s: s.client.log_param(s.run_id, "a b!", 1), InvalidArgument, ("'a b!'", "may contain only")),
    "tag-key-bad": Bad(lambda s: s.client.set_tag(s.run_id, "../t", 1), InvalidArgument, ("'../t'", "relative")),
    # Metric values: a real number (a bool is 1.0 or 0.0, as MLflow's client logs it).
    "value-str": Bad(_metric(value="one"), InvalidArgument, ("'one'", "'loss'", "expected a real number", "float() parses")),
    "value-none": Bad(_metric(value=None), InvalidArgument, ("None", "'loss'", "expected a real number")),
    "value-complex": Bad(_metric(value=1j), InvalidArgument, ("1j", "'loss'", "expected a real number")),
    # Steps: an int64; MLflow writes a float step and then cannot read the run back.
    "step-float": Bad(_metric(step=1.5), InvalidArgument, ("step of metric 'loss'", "1.5", "expected an int")),
    "step-bool": Bad(_metric(step=True), InvalidArgument, ("step of metric 'loss'", "True", "not a bool")),
    "step-2**63": Bad(_metric(step=2**63), InvalidArgument, ("step of metric 'loss'", str(2**63), "expected an int from")),
    # Timestamps: epoch milliseconds, an int >= 0.
    "timestamp-negative": Bad(_metric(timestamp=-1), InvalidArgument, ("timestamp of metric 'loss'", "-1", "expected an int from 0")),
    "timestamp-float": Bad(_metric(timestamp=1.5), InvalidArgument, ("timestamp of metric 'loss'", "1.5", "expected an int")),
    # Lengths: refused, not truncated as MLflow does, because a shortened value is wrong data.
    # MLflow truncates a longer param (tests/client/test_long_values.py) unless told not to.
    "param-6001-chars-not-truncated": Bad(
        lambda s: _without_truncation(lambda: s.client.log_param(s.run_id, "p", "v" * 6001)), InvalidArgument,
        ("param 'p'", "6001", "at most 6000", "MLFLOW_TRUNCATE_LONG_VALUES is false"),
    ),
    # MLflow's set_tag takes any length; one record carries at most MAX_TEXT_LENGTH characters.
    "tag-65537-chars": Bad(lambda s: s.client.set_tag(s.run_id, "t", "v" * 65537), InvalidArgument, ("tag 't'", "65537", "at most 65536")),
    # A param changed within this process: MLflow's own message, at the call site.
    "param-changed": Bad(
        lambda s: s.client.log_param(s.run_id, "fixed", "2"),
        ParamChangedError,
        ("Changing param values is not allowed", "key='fixed'", "value='1'", "new value '2'"),
    ),
    "param-changed-in-batch": Bad(
        lambda s: s.client.log_batch(s.run_id, params=[KeyValue("ok", "1"), KeyValue("fixed", "2")]),
        ParamChangedError,
        ("key='fixed'", "new value '2'"),
    ),
    # A batch with one bad item buffers none of its good ones.
    "batch-with-one-bad-metric": Bad(
        lambda s: s.client.log_batch(s.run_id, metrics=[Metric("good", 1.0, 0, 0), Metric("bad", "x", 0, 0)]),  # type: ignore[arg-type]
        InvalidArgument,
        ("'x'", "'bad'", "expected a real number"),
    ),
    # Runs: an unknown id and a malformed one.
    "unknown-run": Bad(lambda s: s.client.log_metric(UNKNOWN_RUN_ID, "loss", 1.0), RunNotFound, (UNKNOWN_RUN_ID, "not found")),
    "unknown-run-param": Bad(lambda s: s.client.log_param(UNKNOWN_RUN_ID, "p", 1), RunNotFound, (UNKNOWN_RUN_ID, "not found")),
    "malformed-run-id": Bad(lambda s: s.client.log_metric("../run", "loss", 1.0), InvalidArgument, ("'../run'", "expected a str of letters")),
    # Names longer than a file name may be (255 bytes, NAME_MAX): each passed the call site (MLflow
    # counts characters) and the daemon's write failed with "File name too long", taking the other
    # records of its write with it (a run's creation together with its points).
    "run-id-256-chars": Bad(lambda s: s.client.create_run(run_id="a" * 256), InvalidArgument, ("run id 'aaa", "256 bytes", "at most 255 bytes")),
    "run-id-over-255-bytes": Bad(lambda s: s.client.log_metric("a" + "汉" * 85, "loss", 1.0), InvalidArgument, ("run id 'a汉", "256 bytes", "at most 255 bytes")),
    "key-250-cjk-chars": Bad(_metric(key="汉" * 250), InvalidArgument, ("metric key '汉汉", "750 bytes", "at most 255 bytes")),
    "key-part-over-255-bytes": Bad(
        lambda s: s.client.set_tag(s.run_id, "a/" + "汉" * 86, 1), InvalidArgument, ("tag key 'a/汉", "its part", "258 bytes", "at most 255 bytes"),
    ),
    "param-key-over-255-bytes": Bad(lambda s: s.client.log_param(s.run_id, "é" * 128, 1), InvalidArgument, ("param key 'éé", "256 bytes")),
    "batch-with-a-key-over-255-bytes": Bad(
        lambda s: s.client.log_batch(s.run_id, metrics=[Metric("good", 1.0, 0, 0), Metric("汉" * 100, 1.0, 0, 0)]),
        InvalidArgument,
        ("metric key '汉汉", "300 bytes"),
    ),
    "run-tag-key-over-255-bytes": Bad(lambda s: s.client.create_run(tags={"汉" * 100: "v"}), InvalidArgument, ("tag key '汉汉", "300 bytes")),
    "artifact-part-over-255-bytes": Bad(_text("notes/" + "汉" * 90 + ".txt"), InvalidArgument, ("artifact path 'notes/汉", "274 bytes", "at most 255")),
    "dict-file-name-over-255-bytes": Bad(
        lambda s: s.client.log_dict(s.run_id, {"a": 1}, "é" * 130 + ".json"), InvalidArgument, ("artifact path 'éé", "265 bytes"),
    ),
    "artifact-folder-over-255-bytes": Bad(
        lambda s: s.client.log_artifact(s.run_id, s.scratch / "f.txt", artifact_path="é" * 130),
        InvalidArgument,
        ("artifact path 'éé", "its part", "260 bytes"),
    ),
    # A run's tags travel whole in its creation record, which must fit in one frame: 24 MB of them
    # were refused whole as the batch was encoded, and the run was lost with all its points.
    "run-tags-over-8-mib": Bad(
        lambda s: s.client.create_run(tags={f"t{i}": "汉" * 8000 for i in range(999)}),
        InvalidArgument,
        ("tags for new run", "23979", "bytes in UTF-8", f"at most {8 * 2**20} bytes", "set_tag"),
    ),
    # 1000 tags passed, and the run name made them 1001: the daemon refused the whole batch as malformed.
    "run-tags-1000-and-a-name": Bad(
        lambda s: s.client.create_run(tags={f"t{i}": "x" for i in range(1000)}), InvalidArgument, ("tags for new run", "got 1001", "at most 1000"),
    ),
    # A CreateExperiment past the frame limit (or the tag count) could not be sent, and the sender
    # retried it for ever: the call raised DaemonUnavailable after its timeout and no later event of
    # the process was delivered.
    "experiment-tags-over-8-mib": Bad(
        lambda s: s.client.create_experiment("big", tags={f"t{i}": "汉" * 20000 for i in range(300)}),
        InvalidArgument,
        ("tags for new experiment 'big'", "bytes in UTF-8", f"at most {8 * 2**20} bytes"),
    ),
    "experiment-tags-1001": Bad(
        lambda s: s.client.create_experiment("many", tags={f"t{i}": "x" for i in range(1001)}),
        InvalidArgument,
        ("tags for new experiment 'many'", "got 1001", "at most 1000"),
    ),
    # A closed client.
    "metric-after-close": Bad(lambda s: s.closed_client().log_metric(s.run_id, "loss", 1.0), ClientClosedError, ("closed",)),
    "param-after-close": Bad(lambda s: s.closed_client().log_param(s.run_id, "p", 1), ClientClosedError, ("closed",)),
    # Artifact paths: relative, normalized, POSIX.
    "artifact-parent-dir": Bad(_text("../evil.txt"), InvalidArgument, ("'../evil.txt'", "normalized relative")),
    "artifact-absolute": Bad(_text("/etc/evil.txt"), InvalidArgument, ("'/etc/evil.txt'", "normalized relative")),
    # log_text normalizes its artifact_file as MLflow does ("a//b.txt" is "a/b.txt"); an artifact_path is
    # not normalized, and MLflow refuses this one too.
    "artifact-double-slash": Bad(
        lambda s: s.client.log_artifact(s.run_id, s.scratch / "f.txt", artifact_path="a//b"),
        InvalidArgument,
        ("'a//b'", "This name would resolve to 'a/b'"),  # MLflow's words
    ),
    "artifact-dot": Bad(_text("."), InvalidArgument, ("'.'", "normalized relative")),
    "artifact-empty": Bad(_text(""), InvalidArgument, ("''", "non-empty")),
    "artifact-nul": Bad(_text("a\x00.txt"), InvalidArgument, ("'a\\x00.txt'", "NUL")),
    "artifact-file-under-parent-dir": Bad(
        lambda s: s.client.log_artifact(s.run_id, s.scratch / "f.txt", artifact_path="../up"),
        InvalidArgument,
        ("'../up/f.txt'", "normalized relative"),
    ),
    # Not a dict, not text: these used to escape from inside trackd as AttributeError
    # ("'list' object has no attribute 'items'", "'bytes' object has no attribute 'encode'").
    "metrics-list-of-pairs": Bad(
        lambda s: s.client.log_metrics(s.run_id, [("loss", 1.0)]), InvalidArgument, ("Invalid metrics", "expected a dict", "got list"),  # type: ignore[arg-type]
    ),
    "text-bytes": Bad(
        lambda s: s.client.log_text(s.run_id, b"hello", "notes.txt"), InvalidArgument, ("'notes.txt'", "expected a str", "got bytes"),  # type: ignore[arg-type]
    ),
    "text-lone-surrogate": Bad(
        lambda s: s.client.log_text(s.run_id, "a\udc80", "notes.txt"), InvalidArgument, ("'notes.txt'", "UTF-8", "position 1"),
    ),
    # Strings that are not valid UTF-8: a lone surrogate, as os.fsdecode gives a file name's byte that
    # is not UTF-8. msgpack cannot pack one, so each passed the call site and then cost the whole
    # batch it was sent in (up to 10,000 other records), or, in a request or a Hello, the connection.
    "artifact-file-name-not-utf8": Bad(
        lambda s: s.client.log_artifact(s.run_id, _file(s.scratch / NOT_UTF8_NAME)), InvalidArgument, (f"{NOT_UTF8_NAME!r}", MUST_BE_UTF8),
    ),
    "artifact-path-not-utf8": Bad(
        lambda s: s.client.log_artifact(s.run_id, s.scratch / "f.txt", artifact_path="plots-\udcff"),
        InvalidArgument,
        ("'plots-\\udcff/f.txt'", MUST_BE_UTF8),
    ),
    # MLflow copies such a file by its path and keeps its name; here none of the folder is logged.
    "artifacts-folder-holding-a-name-not-utf8": Bad(
        lambda s: s.client.log_artifacts(s.run_id, _file(s.scratch / "folder" / "good.txt", s.scratch / "folder" / NOT_UTF8_NAME)),
        InvalidArgument,
        (f"{NOT_UTF8_NAME!r}", MUST_BE_UTF8),
    ),
    "artifact-in-a-folder-not-utf8": Bad(
        lambda s: s.client.log_artifact(s.run_id, _file(s.scratch / "dir-\udcff" / "ok.txt")),
        InvalidArgument,
        ("path of artifact file", "dir-\\udcff/ok.txt", MUST_BE_UTF8),
    ),
    "text-file-name-not-utf8": Bad(_text(NOT_UTF8_NAME), InvalidArgument, (f"{NOT_UTF8_NAME!r}", MUST_BE_UTF8)),
    "dict-file-name-not-utf8": Bad(
        lambda s: s.client.log_dict(s.run_id, {"a": 1}, "c-\udcff.json"), InvalidArgument, ("'c-\\udcff.json'", MUST_BE_UTF8),
    ),
    "experiment-tag-not-utf8": Bad(
        lambda s: s.client.create_experiment("tagged", tags={"t": "\udcff"}), InvalidArgument, ("experiment tag 't'", MUST_BE_UTF8),
    ),
    "experiment-location-not-utf8": Bad(
        lambda s: s.client.create_experiment("located", artifact_location=str(s.scratch / "loc-\udcff")),
        InvalidArgument,
        ("artifact location", "loc-\\udcff", MUST_BE_UTF8),
    ),
    # The daemon could not make it: every run and point logged to it was refused at flush().
    "store-root-part-over-255-bytes": Bad(
        lambda s: Client(s.scratch / ("é" * 200) / "mlruns", config=s.client.config), InvalidArgument, ("store root", "its part 'éé", "400 bytes"),
    ),
    "store-root-not-utf8": Bad(
        lambda s: Client(s.scratch / "mlruns-\udcff", config=s.client.config), InvalidArgument, ("store root", "mlruns-\\udcff", MUST_BE_UTF8),
    ),
    # Experiment tags were not checked at all here: the daemon refused a long one, in a DeliveryError.
    "experiment-tag-20001-chars": Bad(
        lambda s: s.client.create_experiment("long", tags={"t": "v" * 20001}), InvalidArgument, ("experiment tag 't'", "20001", "at most 20000"),
    ),
    "artifact-missing-file": Bad(
        lambda s: s.client.log_artifact(s.run_id, s.scratch / "missing.txt"), InvalidArgument, ("missing.txt", "does not exist"),
    ),
    # A store root below a folder named artifacts: MLflow 3.10+ reports every run of it as not found.
    "store-under-artifacts": Bad(
        lambda s: Client(s.scratch / "artifacts" / "mlruns", config=s.client.config),
        InvalidArgument,
        ("artifacts", "expected a path without"),
    ),
}


@pytest.mark.parametrize("bad", BAD_CALLS.values(), ids=BAD_CALLS.keys())
def test_bad_call_raises_at_call_site_naming_item_and_store_is_unchanged(scene: Scene, bad: Bad) -> None:
    run_folder = next(scene.store.glob(f"*/{scene.run_id}"))
    before = _snapshot(scene.store)
    with pytest.raises(bad.error) as caught:
        bad.call(scene)
    message = str(caught.value)
    for name in bad.names:
        assert name in message, f"{name!r} missing from {message!r}"
    scene.client.flush(timeout=10.0)
    assert _snapshot(scene.store) == before
    assert run_folder.is_dir()
    assert not (scene.scratch / "artifacts").exists()


@pytest.mark.parametrize("bad", [b for b in BAD_CALLS.values() if issubclass(b.error, InvalidArgument)])
def test_bad_values_are_value_errors_as_in_mlflow(bad: Bad) -> None:
    # MLflow raises MlflowException(INVALID_PARAMETER_VALUE) for each of these; code catching
    # ValueError around a logging call must keep working.
    assert issubclass(bad.error, ValueError)


def test_error_classes_say_what_kind_of_mistake() -> None:
    assert issubclass(ParamChangedError, InvalidArgument) and issubclass(ParamChangedError, ValueError)
    assert issubclass(RunNotFound, LookupError)
    assert issubclass(ClientClosedError, RuntimeError)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 1e308, -0.0, 3])
def test_nan_inf_and_ints_are_accepted_as_metric_values(scene: Scene, value: float) -> None:
    scene.client.log_metric(scene.run_id, "edge", value, step=1)
    [point] = scene.client.get_metric_history(scene.run_id, "edge")
    assert point.value == value or (math.isnan(point.value) and math.isnan(value))
    assert point.step == 1
