"""Artifact locations take the tracking URI's form, byte for byte as MLflow 3.17 writes them.

MLflow's FileStore makes new experiments under its tracking URI: a plain path (absolute or
relative) gives plain absolute paths in ``artifact_location`` and ``artifact_uri``; a ``file:``
URI, and MLflow's default, ``file:///`` URIs. trackd wrote ``file:///`` URIs for every store, so a
ported script's ``os.makedirs(os.path.join(mlflow.get_artifact_uri(), "x"))`` wrote into a folder
named ``./file:/...`` in the working folder. The same script runs here under real MLflow and under
trackd (a real daemon), each in a folder of its own, and the meta.yaml lines are compared.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import msgpack
import pytest
from helpers import DaemonProcess, RawClient, child_env, run_python

from trackd.protocol import ErrorCode, ErrorReply, ExperimentReply, GetExperiment, Hello, Welcome
from trackd.protocol._frames import decode_body

SCRIPT = """
import json, os, sys
if os.environ.get("BACKEND") == "trackd":
    import trackd as mlflow
else:
    import mlflow
if sys.argv[1] != "-":
    mlflow.set_tracking_uri(sys.argv[1])
with mlflow.start_run(run_name="in-default") as run:
    uri = mlflow.get_artifact_uri()
    wrote = None
    if ":" not in uri:  # the ported script's pattern, for a path (a file: URI is no folder under MLflow either)
        folder = os.path.join(mlflow.get_artifact_uri(), "preds")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "p.csv"), "w") as file:
            file.write("a,b\\n")
        wrote = "preds/p.csv"
    seen = {"get_artifact_uri": uri, "get_artifact_uri_x": mlflow.get_artifact_uri("x/y.csv"),
            "run_artifact_uri": run.info.artifact_uri, "tracking_uri": mlflow.get_tracking_uri()}
mlflow.create_experiment("named")
mlflow.create_experiment("explicit-path", artifact_location="explicit")
mlflow.create_experiment("explicit-uri", artifact_location="file:explicit-uri")
mlflow.set_experiment("via-set")
with mlflow.start_run(run_name="in-via-set"):
    pass
print(json.dumps({"seen": seen, "wrote": wrote}))
"""

# (id, tracking URI given ({cwd}: the script's working folder; None: none set), store folder in it)
FORMS = [
    ("absolute-path", "{cwd}/store/mlruns", "store/mlruns"),
    ("relative-path", "store/mlruns", "store/mlruns"),
    ("dot-relative-path", "./mlruns", "mlruns"),
    ("file-uri", "file://{cwd}/store/mlruns", "store/mlruns"),
    ("relative-file-uri", "file:store/mlruns", "store/mlruns"),
    ("default", None, "mlruns"),
]


def _meta_lines(store: Path, cwd: Path) -> dict[str, bytes]:
    """Each experiment's ``artifact_location`` line and each run's ``artifact_uri`` line, as bytes,
    by experiment and run name, with the folder, experiment ids and run ids made neutral."""
    lines: dict[str, bytes] = {}
    for meta in sorted(store.glob("*/meta.yaml")):
        raw = meta.read_bytes()
        name = re.search(rb"^name: (.*)$", raw, re.M).group(1).decode()  # type: ignore[union-attr]
        experiment_id = meta.parent.name.encode()
        (line,) = re.findall(rb"^artifact_location: .*$", raw, re.M)
        lines[f"experiment {name}"] = _neutral(line, cwd, {experiment_id: b"<experiment_id>"})
        for run_meta in sorted(meta.parent.glob("*/meta.yaml")):
            run_raw = run_meta.read_bytes()
            run_name = re.search(rb"^run_name: (.*)$", run_raw, re.M).group(1).decode()  # type: ignore[union-attr]
            (run_line,) = re.findall(rb"^artifact_uri: .*$", run_raw, re.M)
            ids = {experiment_id: b"<experiment_id>", run_meta.parent.name.encode(): b"<run_id>"}
            lines[f"run {run_name}"] = _neutral(run_line, cwd, ids)
    return lines


def _neutral(line: bytes, cwd: Path, ids: dict[bytes, bytes]) -> bytes:
    line = line.replace(str(cwd).encode(), b"<cwd>")
    return b"/".join(ids.get(segment, segment) for segment in line.split(b"/"))


def _run(backend: str, uri: str | None, cwd: Path, env: dict[str, str]) -> dict[str, object]:
    given = "-" if uri is None else uri.format(cwd=cwd)
    if backend == "mlflow" and uri is None:
        # MLflow 2's default (and 3's when ./mlruns holds experiments): path_to_local_file_uri(abspath("mlruns")).
        given = (cwd / "mlruns").as_uri()
    completed = run_python(SCRIPT.replace("sys.argv[1]", repr(given)), {**env, "BACKEND": backend}, cwd=cwd)
    assert completed.returncode == 0, completed.stderr
    return dict(json.loads(completed.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize(("uri", "folder"), [form[1:] for form in FORMS], ids=[form[0] for form in FORMS])
def test_meta_yaml_locations_match_mlflows_for_each_tracking_uri_form(
    daemon: DaemonProcess, tmp_path: Path, uri: str | None, folder: str
) -> None:
    env = child_env(daemon.paths.socket, TRACKD_AUTOSTART="0", MLFLOW_ALLOW_FILE_STORE="true", MLFLOW_DISABLE_TELEMETRY="true")
    for name in ("TRACKD_TRACKING_URI", "MLFLOW_TRACKING_URI"):
        env.pop(name, None)
    results, lines = {}, {}
    for backend in ("mlflow", "trackd"):
        cwd = Path(os.path.realpath(tmp_path / backend))
        cwd.mkdir()
        results[backend] = _run(backend, uri, cwd, env)
        lines[backend] = _meta_lines(cwd / folder, cwd)
        seen = results[backend]["seen"]
        assert isinstance(seen, dict)
        results[backend]["seen"] = {
            key: _neutral(str(value).encode(), cwd, {str(seen["run_artifact_uri"]).split("/")[-2].encode(): b"<run_id>"})
            for key, value in seen.items()
        }
        # Nothing went to a folder named after a URI in the working folder.
        assert not (cwd / "file:").exists()
    assert set(lines["trackd"]) == {
        "experiment Default", "experiment named", "experiment explicit-path", "experiment explicit-uri",
        "experiment via-set", "run in-default", "run in-via-set",
    }
    assert lines["trackd"] == lines["mlflow"]
    mlflow_seen, trackd_seen = results["mlflow"]["seen"], results["trackd"]["seen"]
    assert isinstance(mlflow_seen, dict) and isinstance(trackd_seen, dict)
    if uri is not None and not uri.startswith("{cwd}") and not uri.startswith("file://"):
        # MLflow's get_tracking_uri() gives a relative URI as set; trackd's is absolute (in that
        # form), so that it names the store in use after a chdir.
        del mlflow_seen["tracking_uri"], trackd_seen["tracking_uri"]
    assert trackd_seen == mlflow_seen
    if results["trackd"]["wrote"] is not None:
        # The script's os.path.join(get_artifact_uri(), ...) wrote into the run's artifacts, as MLflow reads them.
        import mlflow

        store = Path(os.path.realpath(tmp_path / "trackd")) / folder
        client = mlflow.MlflowClient(str(store))
        (run,) = client.search_runs(["0"])
        assert [item.path for item in client.list_artifacts(run.info.run_id, "preds")] == ["preds/p.csv"]
        assert run.info.status == "FINISHED"


def test_hello_with_an_artifact_root_naming_another_folder_is_refused_in_a_sentence(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    store = tmp_path / "mlruns"
    for garbage in (str(tmp_path / "elsewhere"), "s3://bucket/mlruns", "relative/mlruns", "file://otherhost" + str(store)):
        raw = RawClient(daemon.paths.socket)
        try:
            raw.send(Hello(protocol_version=7, client_id="raw-bad-root", pid=os.getpid(), host="test",
                           store_root=str(store), artifact_root=garbage))
            reply = raw.next_event()
            assert isinstance(reply, ErrorReply) and reply.code == ErrorCode.REQUEST_FAILED
            assert reply.message.startswith(f"Invalid artifact root {garbage!r} for the store at {str(store)!r}: expected")
        finally:
            raw.close()
    # The daemon carries on, and a client of protocol 6 (a Hello without artifact_root) gets the
    # store's file:// URI, as trackd wrote before.
    raw = RawClient(daemon.paths.socket)
    try:
        assert isinstance(raw.hello(str(store), protocol_version=6), Welcome)
        raw.send(GetExperiment(request_id=1, name="Default", create=False))
        assert raw.next_event() == ExperimentReply(request_id=1, experiment_id="0")
    finally:
        raw.close()
    assert f"artifact_location: {(store / '0').as_uri()}\n".encode() in (store / "0" / "meta.yaml").read_bytes()


def test_a_hello_of_five_fields_as_protocol_6_and_old_spool_files_wrote_it_still_decodes() -> None:
    body = msgpack.packb([1, 6, "old-client", 12, "host", "/tmp/mlruns"], use_bin_type=True)
    hello = decode_body(body)
    assert isinstance(hello, Hello) and hello.artifact_root is None and hello.store_root == "/tmp/mlruns"
