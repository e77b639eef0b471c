"""Where fluent runs go: ``set_tracking_uri``, ``TRACKD_TRACKING_URI`` and ``MLFLOW_TRACKING_URI`` resolved
in MLflow's order, kept for a run that started, and passed on to child processes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fluent_helpers import fluent_env, quiet_result, only_run, run_child
from helpers import DaemonProcess

from trackd.client._config import uri_to_path


@pytest.mark.parametrize(
    ("setup", "variables", "expected"),
    [
        ("trackd.set_tracking_uri('set')", {"TRACKD_TRACKING_URI": "trackd", "MLFLOW_TRACKING_URI": "mlflow"}, "set"),
        ("trackd.set_tracking_uri('file:{cwd}/set-uri')", {}, "set-uri"),
        ("", {"TRACKD_TRACKING_URI": "trackd", "MLFLOW_TRACKING_URI": "mlflow"}, "trackd"),
        ("", {"TRACKD_TRACKING_URI": "{cwd}/abs", "MLFLOW_TRACKING_URI": "mlflow"}, "abs"),
        ("", {"MLFLOW_TRACKING_URI": "mlflow-path"}, "mlflow-path"),
        ("", {"MLFLOW_TRACKING_URI": "file://{cwd}/mlflow-uri"}, "mlflow-uri"),
        ("", {"MLFLOW_TRACKING_URI": "file:{cwd}/mlflow-short-uri"}, "mlflow-short-uri"),
        ("", {"MLFLOW_TRACKING_URI": "http://localhost:5000"}, "mlruns"),
        ("", {}, "mlruns"),
    ],
    ids=["set_tracking_uri-wins", "set_tracking_uri-file-uri", "trackd-over-mlflow", "trackd-absolute",
         "mlflow-path", "mlflow-file-uri", "mlflow-file-short-uri", "mlflow-http-ignored", "default-mlruns"],
)
def test_tracking_uri_resolution_order(daemon: DaemonProcess, tmp_path: Path, setup: str, variables: dict[str, str], expected: str) -> None:
    cwd = tmp_path / "work"
    cwd.mkdir()
    real_cwd = os.path.realpath(cwd)
    env = fluent_env(daemon, None, **{k: v.format(cwd=real_cwd) for k, v in variables.items()})
    code = f"import json, trackd\n{setup.format(cwd=real_cwd)}\nprint(json.dumps({{'uri': trackd.get_tracking_uri()}}))\ntrackd.log_metric('m', 1.0)\n"
    completed = run_child(code, env, cwd=cwd)
    if variables.get("MLFLOW_TRACKING_URI", "").startswith("http"):
        # Said once, though resolved twice: runs a user expects on the team's server go elsewhere.
        (line,) = completed.stderr.splitlines()
        assert line.startswith("trackd: MLFLOW_TRACKING_URI=http://localhost:5000 is not a local folder") and "mlruns" in line
        completed.stderr = ""
    uri = str(quiet_result(completed)["uri"])
    # In MLflow's form: a file: URI stays one (the default is file:///<cwd>/mlruns), a path a path.
    path = uri_to_path(uri)
    assert uri.startswith("file:") == (expected in ("set-uri", "mlflow-uri", "mlflow-short-uri", "mlruns"))
    assert os.path.isabs(path) and os.path.realpath(path) == os.path.join(real_cwd, expected)


def test_logging_with_mlflow_tracking_uri_as_file_uri_writes_there(daemon: DaemonProcess, tmp_path: Path) -> None:
    store = tmp_path / "via-uri"
    quiet_result(run_child("import trackd\ntrackd.log_metric('loss', 1.0)\n", fluent_env(daemon, None, MLFLOW_TRACKING_URI=store.as_uri())))
    assert only_run(store).data.metrics == {"loss": 1.0}


def test_set_tracking_uri_during_a_run_keeps_the_run_in_its_store(daemon: DaemonProcess, tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    result = quiet_result(run_child(
        f"""
        import json, trackd
        trackd.set_tracking_uri({str(first)!r})
        with trackd.start_run() as run:
            trackd.log_metric("a", 1.0)
            trackd.set_tracking_uri({str(second)!r})
        first_id = run.info.run_id
        trackd.start_run()  # in the second store, ended at exit
        trackd.log_metric("b", 2.0)
        trackd.set_tracking_uri({str(first)!r})  # and its run still ends there
        print(json.dumps({{"first": first_id, "second": trackd.last_active_run().info.run_id}}))
        """,
        fluent_env(daemon, None),
    ))
    for path, key, value, run_id in ((first, "a", 1.0, result["first"]), (second, "b", 2.0, result["second"])):
        run = only_run(path)
        assert run.info.run_id == run_id and run.info.status == "FINISHED"
        assert run.data.metrics == {key: value}


def test_set_tracking_uri_closes_the_client_of_a_store_left_without_runs(daemon: DaemonProcess, tmp_path: Path) -> None:
    # A test suite whose fixture points each test at its own store (pytest's tmp_path) kept one
    # sender thread and one daemon connection per store until exit: past the daemon's connection
    # limit (1024, shared by every process of the user), each end_run waited 10 s and spooled.
    stores = [tmp_path / f"test-{i}" for i in range(6)]
    result = quiet_result(run_child(
        f"""
        import json, threading, trackd
        senders = []
        for store in {[str(s) for s in stores]!r}:
            trackd.set_tracking_uri(store)
            with trackd.start_run():
                trackd.log_metric("loss", 0.5)
            senders.append(sum(t.name == "trackd-sender" for t in threading.enumerate()))
        print(json.dumps({{"senders": senders}}))
        """,
        fluent_env(daemon, None),
    ))
    assert result["senders"] == [1] * len(stores)
    for store in stores:
        run = only_run(store)
        assert run.info.status == "FINISHED" and run.data.metrics == {"loss": 0.5}


def test_operations_logged_before_set_tracking_uri_can_still_be_waited_on(daemon: DaemonProcess, tmp_path: Path) -> None:
    # set_tracking_uri closes the old store's client once it has no run; each wait() then raised
    # ClientClosedError for a close the caller never made (MLflow's returns), though the close had
    # delivered what they logged.
    first, second = tmp_path / "first", tmp_path / "second"
    result = quiet_result(run_child(
        f"""
        import json, trackd
        trackd.set_tracking_uri({str(first)!r})
        with trackd.start_run():
            operations = [
                trackd.log_metric("loss", 0.5, synchronous=False),
                trackd.log_metrics({{"acc": 0.9}}, synchronous=False),
                trackd.log_param("lr", 0.01, synchronous=False),
                trackd.log_params({{"seed": 7}}, synchronous=False),
                trackd.set_tag("team", "ml", synchronous=False),
                trackd.set_tags({{"phase": "eval"}}, synchronous=False),
            ]
        trackd.set_tracking_uri({str(second)!r})
        for operation in operations:
            operation.wait()
        print(json.dumps({{"waited": len(operations)}}))
        """,
        fluent_env(daemon, None),
    ))
    assert result == {"waited": 6}
    run = only_run(first)
    assert (run.data.metrics, run.data.params) == ({"loss": 0.5, "acc": 0.9}, {"lr": "0.01", "seed": "7"})
    assert (run.data.tags["team"], run.data.tags["phase"]) == ("ml", "eval")


def test_set_tracking_uri_reaches_child_processes_as_mlflows_does(daemon: DaemonProcess, tmp_path: Path) -> None:
    # MLflow's set_tracking_uri sets MLFLOW_TRACKING_URI so that subprocesses inherit it. trackd's
    # did not: spawn children (and subprocesses) attaching with start_run(run_id=...) made a second
    # run with that id in ./mlruns, and the parent's run never got their points.
    store, cwd = tmp_path / "store", tmp_path / "cwd"
    cwd.mkdir()
    child = "import sys, trackd\nwith trackd.start_run(run_id=sys.argv[1]):\n    trackd.log_metric('child', 1.0)\n"
    result = quiet_result(run_child(
        f"""
        import json, os, subprocess, sys, trackd
        trackd.set_tracking_uri({str(store)!r})
        with trackd.start_run() as run:
            trackd.flush()
            done = subprocess.run([sys.executable, "-c", {child!r}, run.info.run_id], capture_output=True, text=True)
            print(json.dumps({{"code": done.returncode, "stderr": done.stderr, "mlflow": os.environ.get("MLFLOW_TRACKING_URI")}}))
        """,
        fluent_env(daemon, None),
        cwd=cwd,
    ))
    assert result == {"code": 0, "stderr": "", "mlflow": str(store)}
    assert only_run(store).data.metrics == {"child": 1.0}
    assert not (cwd / "mlruns").exists()


def test_a_client_made_without_a_uri_uses_the_one_set_tracking_uri_gave(daemon: DaemonProcess, tmp_path: Path) -> None:
    # As MlflowClient() does; Client() used to ignore it and open ./mlruns.
    store = tmp_path / "set"
    result = quiet_result(run_child(
        f"""
        import json, trackd
        trackd.set_tracking_uri({str(store)!r})
        with trackd.start_run() as run:
            pass
        client = trackd.Client()
        client.log_metric(run.info.run_id, "late", 1.0)
        client.flush()
        print(json.dumps({{"uri": client.tracking_uri, "run": run.info.run_id}}))
        """,
        fluent_env(daemon, None),
    ))
    assert result["uri"] == str(store)
    assert only_run(store).data.metrics == {"late": 1.0}


def test_get_tracking_uri_names_the_store_in_use_after_a_chdir(daemon: DaemonProcess, tmp_path: Path) -> None:
    # It named the new folder's mlruns while every run still went to the first folder's.
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    result = quiet_result(run_child(
        f"""
        import json, os, trackd
        os.chdir({str(first)!r})
        before = trackd.get_tracking_uri()
        trackd.log_metric("a", 1.0)  # the fluent API's store is fixed here
        os.chdir({str(second)!r})
        after = trackd.get_tracking_uri()
        run = trackd.active_run()
        print(json.dumps({{"before": before, "after": after, "artifact_uri": run.info.artifact_uri}}))
        """,
        fluent_env(daemon, None),
    ))
    assert result["before"] == result["after"] == (first / "mlruns").as_uri()  # MLflow's default form
    assert str(result["artifact_uri"]).startswith((first / "mlruns").as_uri())
    assert not (second / "mlruns").exists()


def test_is_tracking_uri_set_and_flush_async_logging_answer_as_mlflows(daemon: DaemonProcess, tmp_path: Path) -> None:
    # transformers' MLflowCallback asks is_tracking_uri_set() before choosing a store, and flushes
    # with flush_async_logging(): with `import trackd as mlflow` both were AttributeErrors.
    store = tmp_path / "store"
    result = quiet_result(run_child(
        f"""
        import json, os, trackd
        os.environ.pop("TRACKD_TRACKING_URI", None); os.environ.pop("MLFLOW_TRACKING_URI", None)
        before = trackd.is_tracking_uri_set()
        os.environ["MLFLOW_TRACKING_URI"] = "file:/elsewhere"
        from_env = trackd.is_tracking_uri_set()
        del os.environ["MLFLOW_TRACKING_URI"]
        trackd.set_tracking_uri({str(store)!r})
        after = trackd.is_tracking_uri_set()
        with trackd.start_run():
            trackd.log_metric("loss", 0.5, synchronous=False)
            trackd.flush_async_logging()
            written = len(list(__import__("pathlib").Path({str(store)!r}).glob("0/*/metrics/loss")))
        print(json.dumps({{"before": before, "from_env": from_env, "after": after, "written": written}}))
        """,
        fluent_env(daemon, None),
    ))
    assert result == {"before": False, "from_env": True, "after": True, "written": 1}
