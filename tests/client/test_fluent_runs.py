"""Fluent runs in a child process: started by the first call or by start_run, nested, tagged as MLflow
tags them, and ended by exit, an exception, Ctrl-C or end_run, with every point delivered."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from fluent_helpers import fluent_env, mlflow_reader, quiet_result, only_run, run_child
from helpers import DaemonProcess


def test_quickstart_without_start_run_logs_to_an_implicit_run_finished_at_exit(daemon: DaemonProcess, store: Path) -> None:
    quiet_result(run_child(
        """
        import trackd as mlflow
        mlflow.log_param("lr", 0.01)
        for step in range(5):
            mlflow.log_metric("loss", 1 / (step + 1), step=step)
        mlflow.set_tag("team", "ml")
        """,
        fluent_env(daemon, store),
    ))
    run = only_run(store)
    assert run.info.status == "FINISHED" and run.info.end_time >= run.info.start_time
    assert run.data.params == {"lr": "0.01"} and run.data.tags["team"] == "ml"
    history = mlflow_reader(store).get_metric_history(run.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(s, 1 / (s + 1)) for s in range(5)]


def test_fluent_calls_with_synchronous_false_return_operations_to_wait_on(daemon: DaemonProcess, store: Path) -> None:
    # The MLflow idiom: collect what synchronous=False returns and wait() before reading back.
    result = quiet_result(run_child(
        """
        import json
        import trackd as mlflow
        from mlflow import MlflowClient
        with mlflow.start_run() as run:
            operations = [
                mlflow.log_metric("loss", 0.5, step=1, synchronous=False),
                mlflow.log_metrics({"acc": 0.9}, step=1, synchronous=False),
                mlflow.log_param("lr", 0.01, synchronous=False),
                mlflow.log_params({"seed": 7}, synchronous=False),
                mlflow.set_tag("team", "ml", synchronous=False),
                mlflow.set_tags({"phase": "eval"}, synchronous=False),
            ]
            for operation in operations:
                operation.wait()
            data = MlflowClient().get_run(run.info.run_id).data
            print(json.dumps({
                "returned": mlflow.log_param("epochs", 3), "metrics": data.metrics, "params": data.params,
                "tags": [data.tags["team"], data.tags["phase"]],
            }))
        """,
        fluent_env(daemon, store, MLFLOW_TRACKING_URI=str(store), MLFLOW_ALLOW_FILE_STORE="true", MLFLOW_DISABLE_TELEMETRY="true"),
    ))
    assert result == {
        "returned": 3, "metrics": {"loss": 0.5, "acc": 0.9}, "params": {"lr": "0.01", "seed": "7"}, "tags": ["ml", "eval"],
    }


@pytest.mark.parametrize(
    ("raise_statement", "status"), [("raise ValueError('boom')", "FAILED"), ("raise KeyboardInterrupt", "KILLED")]
)
@pytest.mark.parametrize("inside_with", [True, False], ids=["with-start_run", "implicit-run"])
def test_uncaught_exception_ends_the_run_failed_and_ctrl_c_killed(
    daemon: DaemonProcess, store: Path, raise_statement: str, status: str, inside_with: bool
) -> None:
    body = f"trackd.log_metric('loss', 1.0)\n{raise_statement}"
    code = f"import trackd\nwith trackd.start_run():\n{textwrap.indent(body, '    ')}" if inside_with else f"import trackd\n{body}"
    result = run_child(code, fluent_env(daemon, store))
    assert result.returncode != 0
    assert raise_statement.split()[1].split("(")[0] in result.stderr
    run = only_run(store)
    assert run.info.status == status and run.info.end_time is not None
    assert run.data.metrics == {"loss": 1.0}


def test_nested_runs_get_the_parent_run_id_tag(daemon: DaemonProcess, store: Path) -> None:
    ids = quiet_result(run_child(
        """
        import json, trackd
        with trackd.start_run() as parent:
            with trackd.start_run(nested=True) as child:
                trackd.log_metric("child_metric", 1.0)
            trackd.log_metric("parent_metric", 2.0)
        print(json.dumps({"parent": parent.info.run_id, "child": child.info.run_id}))
        """,
        fluent_env(daemon, store),
    ))
    client = mlflow_reader(store)
    parent, child = client.get_run(str(ids["parent"])), client.get_run(str(ids["child"]))
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert "mlflow.parentRunId" not in parent.data.tags
    assert (child.data.metrics, parent.data.metrics) == ({"child_metric": 1.0}, {"parent_metric": 2.0})
    assert parent.info.status == child.info.status == "FINISHED"


# Run by trackd and by MLflow itself; both must print the same.
ACTIVE_AND_LAST_RUN = """
    import json, {module} as m
    with m.start_run() as parent:
        with m.start_run(nested=True):
            statuses = [m.active_run().info.status]
        statuses.append(m.last_active_run().info.status)  # while a run is active: that run
    last = m.last_active_run()
    statuses.append(last.info.status)
    types = sorted({{type(s).__name__ for s in statuses}})
    print(json.dumps({{"statuses": statuses, "types": types, "last_is_parent": last.info.run_id == parent.info.run_id}}))
"""


def test_active_run_and_last_active_run_read_status_as_mlflow_does(daemon: DaemonProcess, store: Path, tmp_path: Path) -> None:
    # The status used to be an IntEnum (printed as 1), and last_active_run() was the last run
    # started, as it was then: RUNNING after it had ended.
    ours = quiet_result(run_child(ACTIVE_AND_LAST_RUN.format(module="trackd"), fluent_env(daemon, store)))
    theirs = run_child(ACTIVE_AND_LAST_RUN.format(module="mlflow"), fluent_env(daemon, None, MLFLOW_TRACKING_URI=str(tmp_path / "mlflow-runs")))
    assert theirs.returncode == 0, theirs.stderr
    assert ours == json.loads(theirs.stdout.strip().splitlines()[-1])
    assert ours == {"statuses": ["RUNNING", "RUNNING", "FINISHED"], "types": ["str"], "last_is_parent": True}


def test_start_run_sets_mlflow_system_tags_and_description(daemon: DaemonProcess, store: Path, tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(
        """
        import trackd
        with trackd.start_run(run_name="my-run", description="a **markdown** note", tags={"k": "v"}):
            trackd.log_metric("loss", 1.0)
        """
    ))
    result = subprocess.run([sys.executable, str(script)], env=fluent_env(daemon, store), capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stderr) == (0, "")
    run = only_run(store)
    assert run.info.run_name == "my-run"
    assert {k: v for k, v in run.data.tags.items() if k.startswith("mlflow.") or k == "k"} == {
        "mlflow.user": getpass.getuser(),
        "mlflow.source.name": str(script),
        "mlflow.source.type": "LOCAL",
        "mlflow.runName": "my-run",
        "mlflow.note.content": "a **markdown** note",
        "k": "v",
    }


def test_a_script_whose_path_is_not_utf8_gets_its_source_name_tag_with_the_byte_escaped(
    daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    # start_run raised InvalidArgument for tag 'mlflow.source.name', a tag the caller never gave:
    # sys.argv[0] holds a lone surrogate for the byte that is not UTF-8 (MLflow's FileStore fails too,
    # with UnicodeEncodeError as it writes the tag file).
    script = tmp_path / os.fsdecode(b"train-\xff.py")
    script.write_text("import trackd\nwith trackd.start_run():\n    trackd.log_metric('loss', 1.0)\n")
    result = subprocess.run([sys.executable, script], env=fluent_env(daemon, store), capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stderr) == (0, "")
    run = only_run(store)
    assert run.data.tags["mlflow.source.name"] == str(tmp_path / "train-\\xff.py")
    assert run.data.metrics == {"loss": 1.0}


def test_run_without_a_name_gets_a_generated_run_name_tag(daemon: DaemonProcess, store: Path) -> None:
    quiet_result(run_child("import trackd\nwith trackd.start_run():\n    pass\n", fluent_env(daemon, store)))
    run = only_run(store)
    assert run.info.run_name and run.data.tags["mlflow.runName"] == run.info.run_name


def test_normal_exit_delivers_every_point_without_flush(daemon: DaemonProcess, store: Path) -> None:
    quiet_result(run_child(
        """
        import trackd
        trackd.start_run()
        for step in range(1000):
            trackd.log_metric("loss", step / 1000, step=step)
        """,
        fluent_env(daemon, store),
    ))
    run = only_run(store)
    history = mlflow_reader(store).get_metric_history(run.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(s, s / 1000) for s in range(1000)]
    assert run.info.status == "FINISHED"


def test_exit_hook_registered_after_import_trackd_may_still_log(daemon: DaemonProcess, store: Path) -> None:
    # trackd registers its exit hook at import, not when the client loads at start_run, so a hook
    # the program registers after ``import trackd`` runs first (atexit is last-in, first-out).
    quiet_result(run_child(
        """
        import atexit, trackd
        atexit.register(lambda: trackd.log_metric("final", 1.0))
        trackd.start_run()
        trackd.log_metric("loss", 0.5)
        """,
        fluent_env(daemon, store),
    ))
    run = only_run(store)
    assert run.data.metrics == {"loss": 0.5, "final": 1.0}
    assert run.info.status == "FINISHED"


def test_a_client_dropped_without_close_still_delivers_at_exit(daemon: DaemonProcess, store: Path) -> None:
    # MLflow code makes clients inline (MlflowClient().log_metric(...)) and never closes them.
    result = quiet_result(run_child(
        """
        import gc, json, trackd
        run_id = trackd.Client().create_run().info.run_id
        def log_inline():
            client = trackd.Client()
            for step in range(100):
                client.log_metric(run_id, "dropped", float(step), step=step)
        log_inline()
        gc.collect()
        for step in range(100):
            trackd.Client().log_metric(run_id, "inline", float(step), step=step)
        gc.collect()
        print(json.dumps({"run_id": run_id}))
        """,
        fluent_env(daemon, store),
    ))
    client = mlflow_reader(store)
    for key in ("dropped", "inline"):
        history = client.get_metric_history(str(result["run_id"]), key)
        assert [(m.step, m.value) for m in history] == [(s, float(s)) for s in range(100)]


def test_end_run_with_a_bad_status_raises_and_leaves_the_run_active(daemon: DaemonProcess, store: Path) -> None:
    result = quiet_result(run_child(
        """
        import json, trackd
        from trackd.errors import InvalidArgument
        run = trackd.start_run()
        try:
            trackd.end_run("DONE")
        except InvalidArgument as exc:
            message = str(exc)
        still_active = trackd.active_run() is run
        trackd.log_metric("after", 1.0)
        trackd.end_run("KILLED")
        print(json.dumps({"message": message, "still_active": still_active, "after_end": trackd.active_run() is None}))
        """,
        fluent_env(daemon, store),
    ))
    assert "DONE" in str(result["message"]) and result["still_active"] and result["after_end"]
    run = only_run(store)
    assert run.info.status == "KILLED" and run.data.metrics == {"after": 1.0}


def test_a_parent_run_id_that_is_not_the_active_run_is_refused(daemon: DaemonProcess, store: Path) -> None:
    completed = run_child(
        "import trackd\ntrackd.start_run()\ntrackd.start_run(nested=True, parent_run_id='c' * 32)\n", fluent_env(daemon, store)
    )
    assert completed.returncode == 1 and "does not match the specified parent_run_id" in completed.stderr


def test_a_timestamp_of_0_is_now_as_in_mlflows_fluent_calls(daemon: DaemonProcess, store: Path) -> None:
    # MLflow's fluent log_metric(s) take `timestamp or get_current_time_millis()`; trackd stored 0.
    result = quiet_result(run_child(
        """
        import json, time, trackd
        before = int(time.time() * 1000)
        with trackd.start_run() as run:
            trackd.log_metric("a", 1.0, timestamp=0)
            trackd.log_metrics({"b": 2.0}, timestamp=0)
        print(json.dumps({"run_id": run.run_id, "before": before}))
        """,
        fluent_env(daemon, store),
    ))
    client = mlflow_reader(store)
    for key in ("a", "b"):
        [metric] = client.get_metric_history(str(result["run_id"]), key)
        assert metric.timestamp >= int(result["before"])  # type: ignore[call-overload]
