"""The fluent API (``trackd.start_run``, ``trackd.log_metric``...) in real child processes.

The fluent functions keep module state (the active run stack, the client), and the behaviour under
test is about process exit, exceptions, environment variables and fork, so each scenario runs in
a fresh interpreter and is checked from outside: exit code, stderr, and the store read by MLflow.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from helpers import DaemonProcess, child_env, run_python

from trackd import Client, ClientConfig

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Run as MlflowRun, ViewType  # noqa: E402

TRACKING_VARIABLES = ("TRACKD_TRACKING_URI", "MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID", "RANK")


def _env(daemon: DaemonProcess, store: Path | None, **extra: str) -> dict[str, str]:
    """A child's environment: the test's daemon, no autostart, and only the tracking variables given."""
    env = child_env(daemon.paths.socket, TRACKD_AUTOSTART="0")
    for name in TRACKING_VARIABLES:
        env.pop(name, None)
    if store is not None:
        env["TRACKD_TRACKING_URI"] = str(store)
    env.update(extra)
    return env


def _run(code: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run_python(textwrap.dedent(code), env, cwd=cwd, timeout=60.0)


def _ok(result: subprocess.CompletedProcess[str]) -> dict[str, object]:
    """The JSON the child printed last; the child must have exited 0 and said nothing on stderr."""
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    last = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else "{}"
    return dict(json.loads(last))


def _mlflow(store: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=str(store))


def _only_run(store: Path, experiment_id: str = "0") -> MlflowRun:
    [run] = _mlflow(store).search_runs([experiment_id])
    return run


def test_quickstart_without_start_run_logs_to_an_implicit_run_finished_at_exit(daemon: DaemonProcess, store: Path) -> None:
    _ok(_run(
        """
        import trackd as mlflow
        mlflow.log_param("lr", 0.01)
        for step in range(5):
            mlflow.log_metric("loss", 1 / (step + 1), step=step)
        mlflow.set_tag("team", "ml")
        """,
        _env(daemon, store),
    ))
    run = _only_run(store)
    assert run.info.status == "FINISHED" and run.info.end_time >= run.info.start_time
    assert run.data.params == {"lr": "0.01"} and run.data.tags["team"] == "ml"
    history = _mlflow(store).get_metric_history(run.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(s, 1 / (s + 1)) for s in range(5)]


def test_fluent_calls_with_synchronous_false_return_operations_to_wait_on(daemon: DaemonProcess, store: Path) -> None:
    # The MLflow idiom: collect what synchronous=False returns and wait() before reading back.
    result = _ok(_run(
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
        _env(daemon, store, MLFLOW_TRACKING_URI=str(store), MLFLOW_ALLOW_FILE_STORE="true", MLFLOW_DISABLE_TELEMETRY="true"),
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
    result = _run(code, _env(daemon, store))
    assert result.returncode != 0
    assert raise_statement.split()[1].split("(")[0] in result.stderr
    run = _only_run(store)
    assert run.info.status == status and run.info.end_time is not None
    assert run.data.metrics == {"loss": 1.0}


def test_nested_runs_get_the_parent_run_id_tag(daemon: DaemonProcess, store: Path) -> None:
    ids = _ok(_run(
        """
        import json, trackd
        with trackd.start_run() as parent:
            with trackd.start_run(nested=True) as child:
                trackd.log_metric("child_metric", 1.0)
            trackd.log_metric("parent_metric", 2.0)
        print(json.dumps({"parent": parent.info.run_id, "child": child.info.run_id}))
        """,
        _env(daemon, store),
    ))
    client = _mlflow(store)
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
    ours = _ok(_run(ACTIVE_AND_LAST_RUN.format(module="trackd"), _env(daemon, store)))
    theirs = _run(ACTIVE_AND_LAST_RUN.format(module="mlflow"), _env(daemon, None, MLFLOW_TRACKING_URI=str(tmp_path / "mlflow-runs")))
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
    result = subprocess.run([sys.executable, str(script)], env=_env(daemon, store), capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stderr) == (0, "")
    run = _only_run(store)
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
    result = subprocess.run([sys.executable, script], env=_env(daemon, store), capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stderr) == (0, "")
    run = _only_run(store)
    assert run.data.tags["mlflow.source.name"] == str(tmp_path / "train-\\xff.py")
    assert run.data.metrics == {"loss": 1.0}


def test_run_without_a_name_gets_a_generated_run_name_tag(daemon: DaemonProcess, store: Path) -> None:
    _ok(_run("import trackd\nwith trackd.start_run():\n    pass\n", _env(daemon, store)))
    run = _only_run(store)
    assert run.info.run_name and run.data.tags["mlflow.runName"] == run.info.run_name


def test_set_experiment_by_name_creates_it_once_across_two_processes(daemon: DaemonProcess, store: Path, tmp_path: Path) -> None:
    gate = tmp_path / "go"
    code = textwrap.dedent(
        f"""
        import json, os, time, trackd
        deadline = time.monotonic() + 20
        while not os.path.exists({str(gate)!r}) and time.monotonic() < deadline:
            time.sleep(0.001)
        experiment = trackd.set_experiment("shared")
        with trackd.start_run():
            trackd.log_metric("loss", 1.0)
        print(json.dumps({{"experiment_id": experiment.experiment_id}}))
        """
    )
    env = _env(daemon, store)
    children = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    gate.touch()
    outputs = [child.communicate(timeout=60) for child in children]
    results = [subprocess.CompletedProcess(c.args, c.returncode, out, err) for c, (out, err) in zip(children, outputs)]
    first, second = (_ok(r)["experiment_id"] for r in results)
    assert first == second
    experiments = _mlflow(store).search_experiments(view_type=ViewType.ALL)
    assert [e.experiment_id for e in experiments if e.name == "shared"] == [first]
    assert len(_mlflow(store).search_runs([str(first)])) == 2


def test_set_experiment_without_a_daemon_raises_daemon_unavailable_naming_it(store: Path, tmp_path: Path) -> None:
    # This used to raise FlushTimeout ("0 events are still on their way to the store"), and exit
    # then printed "0 events are spooled to None".
    env = child_env(tmp_path / "none.sock", TRACKD_AUTOSTART="0", TRACKD_CONNECT_TIMEOUT="0.5")
    for name in TRACKING_VARIABLES:
        env.pop(name, None)
    env["TRACKD_TRACKING_URI"] = str(store)
    code = """
        import trackd
        try:
            trackd.set_experiment("mnist")
        except trackd.DaemonUnavailable as exc:
            print(exc)
    """
    result = _run(code, env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Cannot get or create experiment 'mnist': the trackd daemon at {tmp_path}/none.sock is unreachable")
    assert "spooled to None" not in result.stderr
    # The exception says the daemon is unreachable; with nothing to deliver, exit adds nothing, and
    # the sender, which gave up within a second, adds no "unreachable ... Retrying." beside it.
    assert [line for line in result.stderr.splitlines() if line.startswith("trackd:")] == [], result.stderr


@pytest.mark.parametrize(
    "code",
    [
        "import trackd\ntrackd.log_metric('loss', 1.0)\n",
        "import trackd\nwith trackd.start_run():\n    trackd.log_metric('loss', 1.0)\n",
        "import trackd\ntrackd.start_run()\ntrackd.log_metric('loss', 1.0)\ntrackd.end_run()\n",
    ],
    ids=["implicit", "with-start_run", "end_run"],
)
def test_mlflow_run_id_attaches_to_an_existing_run_without_ending_it(daemon: DaemonProcess, store: Path, code: str) -> None:
    with Client(store, config=ClientConfig(socket_path=daemon.paths.socket, autostart=False)) as client:
        run_id = client.create_run(run_name="launcher").info.run_id
    _ok(_run(code, _env(daemon, store, MLFLOW_RUN_ID=run_id)))
    run = _only_run(store)
    assert (run.info.run_id, run.info.run_name, run.info.status, run.info.end_time) == (run_id, "launcher", "RUNNING", None)
    assert run.data.metrics == {"loss": 1.0}


@pytest.mark.parametrize("rank", [None, "0", "1"], ids=["no-RANK", "rank-0", "rank-1"])
def test_a_failed_run_started_again_runs_and_finishes_as_mlflow_resumes_it(
    daemon: DaemonProcess, store: Path, rank: str | None
) -> None:
    with Client(store, config=ClientConfig(socket_path=daemon.paths.socket, autostart=False)) as client:
        run_id = client.create_run(run_name="preempted", start_time=1_000).info.run_id
        client.set_terminated(run_id, "FAILED", end_time=2_000)
    code = f"""
        import json, trackd
        with trackd.start_run(run_id={run_id!r}) as run:
            trackd.log_metric("loss", 1.0)
            during = trackd.get_run(run.info.run_id).info.status
        print(json.dumps({{"returned": run.info.status, "during": during}}))
        """
    result = _ok(_run(code, _env(daemon, store, **({"RANK": rank} if rank is not None else {}))))
    run = _only_run(store)
    if rank == "1":
        # Another rank than 0 never reopens a run: rank 0 may have just finished it.
        assert (result["returned"], result["during"], run.info.status) == ("FAILED", "FAILED", "FAILED")
        return
    # What mlflow.start_run(run_id=...) does to a FAILED run: RUNNING, then FINISHED at the end.
    assert (result["returned"], result["during"], run.info.status) == ("RUNNING", "RUNNING", "FINISHED")
    assert run.info.end_time is not None and run.info.end_time > 2_000
    assert run.data.metrics == {"loss": 1.0}


def test_mlflow_resumes_a_failed_run_the_same_way(tmp_path: Path) -> None:
    # The behaviour copied above, checked against MLflow itself on its own file store.
    store = tmp_path / "mlruns"
    result = _ok(_run(
        f"""
        import json, mlflow
        mlflow.set_tracking_uri({store.as_uri()!r})
        client = mlflow.MlflowClient()
        run_id = client.create_run("0").info.run_id
        client.set_terminated(run_id, "FAILED")
        with mlflow.start_run(run_id=run_id) as run:
            returned = run.info.status
            during = client.get_run(run_id).info.status
        print(json.dumps({{"returned": returned, "during": during, "after": client.get_run(run_id).info.status}}))
        """,
        {**os.environ, "MLFLOW_ALLOW_FILE_STORE": "true", "MLFLOW_DISABLE_TELEMETRY": "true"},
    ))
    assert result == {"returned": "RUNNING", "during": "RUNNING", "after": "FINISHED"}


def test_start_run_with_a_new_run_id_creates_that_run(daemon: DaemonProcess, store: Path) -> None:
    run_id = uuid.uuid4().hex
    _ok(_run(f"import trackd\nwith trackd.start_run(run_id={run_id!r}):\n    trackd.log_metric('loss', 1.0)\n", _env(daemon, store)))
    run = _only_run(store)
    assert (run.info.run_id, run.info.status) == (run_id, "FINISHED")


@pytest.mark.parametrize(
    ("ending", "status"),
    [("trackd.end_run()", "RUNNING"), ("", "RUNNING"), ("trackd.end_run('FINISHED')", "FINISHED"), ("trackd.end_run('FAILED')", "FAILED")],
    ids=["end_run", "exit", "end_run-FINISHED", "end_run-FAILED"],
)
def test_rank_1_leaves_a_shared_run_running_unless_given_a_status(daemon: DaemonProcess, store: Path, ending: str, status: str) -> None:
    run_id = uuid.uuid4().hex
    code = f"import trackd\ntrackd.start_run(run_id={run_id!r})\ntrackd.log_metric('loss', 1.0)\n{ending}\n"
    _ok(_run(code, _env(daemon, store, RANK="1")))
    run = _only_run(store)
    assert (run.info.run_id, run.info.status, run.data.metrics) == (run_id, status, {"loss": 1.0})


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
    env = _env(daemon, None, **{k: v.format(cwd=real_cwd) for k, v in variables.items()})
    code = f"import json, trackd\n{setup.format(cwd=real_cwd)}\nprint(json.dumps({{'uri': trackd.get_tracking_uri()}}))\ntrackd.log_metric('m', 1.0)\n"
    completed = _run(code, env, cwd=cwd)
    if variables.get("MLFLOW_TRACKING_URI", "").startswith("http"):
        # Said once, though resolved twice: runs a user expects on the team's server go elsewhere.
        (line,) = completed.stderr.splitlines()
        assert line.startswith("trackd: MLFLOW_TRACKING_URI=http://localhost:5000 is not a local folder") and "mlruns" in line
        completed.stderr = ""
    uri = str(_ok(completed)["uri"])
    assert os.path.isabs(uri) and os.path.realpath(uri) == os.path.join(real_cwd, expected)


def test_logging_with_mlflow_tracking_uri_as_file_uri_writes_there(daemon: DaemonProcess, tmp_path: Path) -> None:
    store = tmp_path / "via-uri"
    _ok(_run("import trackd\ntrackd.log_metric('loss', 1.0)\n", _env(daemon, None, MLFLOW_TRACKING_URI=store.as_uri())))
    assert _only_run(store).data.metrics == {"loss": 1.0}


def test_normal_exit_delivers_every_point_without_flush(daemon: DaemonProcess, store: Path) -> None:
    _ok(_run(
        """
        import trackd
        trackd.start_run()
        for step in range(1000):
            trackd.log_metric("loss", step / 1000, step=step)
        """,
        _env(daemon, store),
    ))
    run = _only_run(store)
    history = _mlflow(store).get_metric_history(run.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(s, s / 1000) for s in range(1000)]
    assert run.info.status == "FINISHED"


def test_import_trackd_loads_the_client_sender_and_msgpack_only_at_start_run(daemon: DaemonProcess, store: Path) -> None:
    # Short processes (test suites, sweeps) pay for every module import trackd loads.
    result = _ok(_run(
        """
        import json, sys, trackd
        delivery = ("trackd.client._client", "trackd.client._sender", "trackd.protocol", "trackd.store", "msgpack")
        daemon_side = ("trackd.store._writer", "trackd.store._write_items", "trackd.daemon")
        loaded = lambda names: [name for name in names if name in sys.modules]
        after_import = loaded(delivery)
        with trackd.start_run():
            after_start_run = loaded(delivery)
            trackd.log_metric("loss", 0.5)
        print(json.dumps({"after_import": after_import, "after_start_run": after_start_run, "daemon_side": loaded(daemon_side)}))
        """,
        _env(daemon, store),
    ))
    assert result["after_import"] == []
    assert result["after_start_run"] == ["trackd.client._client", "trackd.client._sender", "trackd.protocol", "trackd.store", "msgpack"]
    assert result["daemon_side"] == []  # what the daemon writes with, a training process never loads
    assert _only_run(store).data.metrics == {"loss": 0.5}


def test_exit_hook_registered_after_import_trackd_may_still_log(daemon: DaemonProcess, store: Path) -> None:
    # trackd registers its exit hook at import, not when the client loads at start_run, so a hook
    # the program registers after ``import trackd`` runs first (atexit is last-in, first-out).
    _ok(_run(
        """
        import atexit, trackd
        atexit.register(lambda: trackd.log_metric("final", 1.0))
        trackd.start_run()
        trackd.log_metric("loss", 0.5)
        """,
        _env(daemon, store),
    ))
    run = _only_run(store)
    assert run.data.metrics == {"loss": 0.5, "final": 1.0}
    assert run.info.status == "FINISHED"


def test_forked_child_logs_to_the_parents_run_and_nothing_is_duplicated(daemon: DaemonProcess, store: Path) -> None:
    # Five rounds, because the first points of a child can race its parent's CreateRun to the daemon.
    code = """
        import json, os, sys, time, trackd
        rounds = []
        for _ in range(5):
            run = trackd.start_run()
            for step in range(10):
                trackd.log_metric("parent", float(step), step=step)  # still buffered at the fork
            pid = os.fork()
            if pid == 0:
                for step in range(100):
                    trackd.log_metric("child", float(step), step=step)
                sys.exit(0)  # a normal exit: atexit delivers the child's points
            deadline = time.monotonic() + 30
            while (done := os.waitpid(pid, os.WNOHANG))[0] == 0:
                if time.monotonic() > deadline:
                    os.kill(pid, 9)
                    sys.exit("the forked child hung at exit")
                time.sleep(0.01)
            for step in range(10, 20):
                trackd.log_metric("parent", float(step), step=step)
            trackd.end_run()
            rounds.append({"run_id": run.info.run_id, "child_exit": os.waitstatus_to_exitcode(done[1])})
        print(json.dumps({"rounds": rounds}))
    """
    result = _ok(_run(code, _env(daemon, store, PYTHONWARNINGS="ignore::DeprecationWarning")))
    client = _mlflow(store)
    for round_ in result["rounds"]:  # type: ignore[attr-defined]
        run_id = round_["run_id"]
        assert round_["child_exit"] == 0
        assert [m.step for m in client.get_metric_history(run_id, "parent")] == list(range(20))
        assert sorted(m.step for m in client.get_metric_history(run_id, "child")) == list(range(100))
        # The parent owns the run: the child's exit did not end it, the parent's end_run did.
        assert client.get_run(run_id).info.status == "FINISHED"


# What a short run must not load: each is memory and import time in every training process, for
# work only the daemon or a rare path does (PyYAML ~11 ms; logging, tempfile with shutil and
# random, uuid with platform: ~3 MB of RSS together; dataclasses with inspect: ~21 ms and 1.6 MB).
HEAVY_MODULES = ("yaml", "logging", "tempfile", "shutil", "random", "uuid", "platform", "dataclasses", "inspect")


def test_a_short_run_in_the_default_experiment_loads_no_heavy_module(daemon: DaemonProcess, store: Path) -> None:
    # meta.yaml's artifact location, all a new run needs, is read without PyYAML when it is a plain path.
    code = (
        "import sys, trackd\n"
        "with trackd.start_run():\n"
        "    trackd.log_metric('loss', 0.5)\n"
        f"print(*[name for name in {HEAVY_MODULES!r} if name in sys.modules])\n"
    )
    env = child_env(daemon.paths.socket, TRACKD_TRACKING_URI=str(store))
    first = run_python(code, env)  # makes the store, and experiment 0's meta.yaml to read next time
    assert first.returncode == 0, first.stderr
    assert (store / "0" / "meta.yaml").is_file()
    result = run_python(code, env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == []


def test_a_client_dropped_without_close_still_delivers_at_exit(daemon: DaemonProcess, store: Path) -> None:
    # MLflow code makes clients inline (MlflowClient().log_metric(...)) and never closes them.
    result = _ok(_run(
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
        _env(daemon, store),
    ))
    client = _mlflow(store)
    for key in ("dropped", "inline"):
        history = client.get_metric_history(str(result["run_id"]), key)
        assert [(m.step, m.value) for m in history] == [(s, float(s)) for s in range(100)]


def test_set_tracking_uri_during_a_run_keeps_the_run_in_its_store(daemon: DaemonProcess, tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    result = _ok(_run(
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
        _env(daemon, None),
    ))
    for path, key, value, run_id in ((first, "a", 1.0, result["first"]), (second, "b", 2.0, result["second"])):
        run = _only_run(path)
        assert run.info.run_id == run_id and run.info.status == "FINISHED"
        assert run.data.metrics == {key: value}


def test_set_tracking_uri_closes_the_client_of_a_store_left_without_runs(daemon: DaemonProcess, tmp_path: Path) -> None:
    # A test suite whose fixture points each test at its own store (pytest's tmp_path) kept one
    # sender thread and one daemon connection per store until exit: past the daemon's connection
    # limit (1024, shared by every process of the user), each end_run waited 10 s and spooled.
    stores = [tmp_path / f"test-{i}" for i in range(6)]
    result = _ok(_run(
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
        _env(daemon, None),
    ))
    assert result["senders"] == [1] * len(stores)
    for store in stores:
        run = _only_run(store)
        assert run.info.status == "FINISHED" and run.data.metrics == {"loss": 0.5}


def test_operations_logged_before_set_tracking_uri_can_still_be_waited_on(daemon: DaemonProcess, tmp_path: Path) -> None:
    # set_tracking_uri closes the old store's client once it has no run; each wait() then raised
    # ClientClosedError for a close the caller never made (MLflow's returns), though the close had
    # delivered what they logged.
    first, second = tmp_path / "first", tmp_path / "second"
    result = _ok(_run(
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
        _env(daemon, None),
    ))
    assert result == {"waited": 6}
    run = _only_run(first)
    assert (run.data.metrics, run.data.params) == ({"loss": 0.5, "acc": 0.9}, {"lr": "0.01", "seed": "7"})
    assert (run.data.tags["team"], run.data.tags["phase"]) == ("ml", "eval")


def test_set_tracking_uri_reaches_child_processes_as_mlflows_does(daemon: DaemonProcess, tmp_path: Path) -> None:
    # MLflow's set_tracking_uri sets MLFLOW_TRACKING_URI so that subprocesses inherit it. trackd's
    # did not: spawn children (and subprocesses) attaching with start_run(run_id=...) made a second
    # run with that id in ./mlruns, and the parent's run never got their points.
    store, cwd = tmp_path / "store", tmp_path / "cwd"
    cwd.mkdir()
    child = "import sys, trackd\nwith trackd.start_run(run_id=sys.argv[1]):\n    trackd.log_metric('child', 1.0)\n"
    result = _ok(_run(
        f"""
        import json, os, subprocess, sys, trackd
        trackd.set_tracking_uri({str(store)!r})
        with trackd.start_run() as run:
            trackd.flush()
            done = subprocess.run([sys.executable, "-c", {child!r}, run.info.run_id], capture_output=True, text=True)
            print(json.dumps({{"code": done.returncode, "stderr": done.stderr, "mlflow": os.environ.get("MLFLOW_TRACKING_URI")}}))
        """,
        _env(daemon, None),
        cwd=cwd,
    ))
    assert result == {"code": 0, "stderr": "", "mlflow": str(store)}
    assert _only_run(store).data.metrics == {"child": 1.0}
    assert not (cwd / "mlruns").exists()


def test_set_experiment_reaches_child_processes_as_mlflows_does(daemon: DaemonProcess, store: Path) -> None:
    # MLflow's set_experiment sets MLFLOW_EXPERIMENT_ID "so that subprocess can inherit it".
    # trackd's did not: ranks a launcher started after set_experiment created the shared run (and
    # their nested runs) in the Default experiment, and a rank-0 creation in the launcher's
    # experiment arriving second was refused as a run of another experiment.
    child = "import sys, trackd\nwith trackd.start_run(run_id=sys.argv[1]):\n    trackd.log_metric('child', 1.0)\n"
    result = _ok(_run(
        f"""
        import json, os, subprocess, sys, uuid, trackd
        experiment = trackd.set_experiment("launched")
        run_id = uuid.uuid4().hex
        done = subprocess.run([sys.executable, "-c", {child!r}, run_id], capture_output=True, text=True)
        print(json.dumps({{"code": done.returncode, "stderr": done.stderr, "run_id": run_id,
                          "experiment_id": experiment.experiment_id, "env": os.environ.get("MLFLOW_EXPERIMENT_ID")}}))
        """,
        _env(daemon, store),
    ))
    assert (result["code"], result["stderr"], result["env"]) == (0, "", result["experiment_id"])
    run = _mlflow(store).get_run(str(result["run_id"]))
    assert (run.info.experiment_id, run.data.metrics) == (result["experiment_id"], {"child": 1.0})


def test_end_run_with_a_bad_status_raises_and_leaves_the_run_active(daemon: DaemonProcess, store: Path) -> None:
    result = _ok(_run(
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
        _env(daemon, store),
    ))
    assert "DONE" in str(result["message"]) and result["still_active"] and result["after_end"]
    run = _only_run(store)
    assert run.info.status == "KILLED" and run.data.metrics == {"after": 1.0}


def test_a_client_made_without_a_uri_uses_the_one_set_tracking_uri_gave(daemon: DaemonProcess, tmp_path: Path) -> None:
    # As MlflowClient() does; Client() used to ignore it and open ./mlruns.
    store = tmp_path / "set"
    result = _ok(_run(
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
        _env(daemon, None),
    ))
    assert result["uri"] == str(store)
    assert _only_run(store).data.metrics == {"late": 1.0}


def test_get_tracking_uri_names_the_store_in_use_after_a_chdir(daemon: DaemonProcess, tmp_path: Path) -> None:
    # It named the new folder's mlruns while every run still went to the first folder's.
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    result = _ok(_run(
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
        _env(daemon, None),
    ))
    assert result["before"] == result["after"] == str(first / "mlruns")
    assert str(result["artifact_uri"]).startswith((first / "mlruns").as_uri())
    assert not (second / "mlruns").exists()


THREADED_TRIALS = """
import json, threading, time, trackd
from concurrent.futures import ThreadPoolExecutor
{setup}
def trial(lr):
    with trackd.start_run(run_name=f"lr={{lr}}", nested={nested}) as run:
        trackd.log_param("lr", lr)
        time.sleep(0.2)  # every trial's run is active at once
        trackd.log_metric("score", lr * 10)
        return run.run_id
with ThreadPoolExecutor(4) as pool:
    ids = list(pool.map(trial, [0.1, 0.2, 0.3, 0.4]))
print(json.dumps({{"ids": ids, "study": {study}}}))
"""


@pytest.mark.parametrize(
    ("nested", "setup", "study"),
    [(True, "", "None"), (False, "", "None"), (True, "study = trackd.start_run(run_name='study')", "study.run_id")],
    ids=["nested-no-parent", "not-nested", "nested-under-the-main-threads-run"],
)
def test_trials_run_in_threads_each_log_to_their_own_run(
    daemon: DaemonProcess, store: Path, nested: bool, setup: str, study: str
) -> None:
    # As MLflow 3 keeps them, runs are per thread: one shared stack chained the four trials as
    # parent, child, grandchild..., each trial's score landing in another's run (or, not nested,
    # three of the four raised "already active").
    result = _ok(_run(THREADED_TRIALS.format(setup=setup, nested=nested, study=study), _env(daemon, store)))
    client = _mlflow(store)
    for lr, run_id in zip([0.1, 0.2, 0.3, 0.4], result["ids"]):  # type: ignore[call-overload]
        run = client.get_run(run_id)
        assert run.data.params == {"lr": str(lr)} and run.info.status == "FINISHED"
        assert [m.value for m in client.get_metric_history(run_id, "score")] == [lr * 10]
        assert run.data.tags.get("mlflow.parentRunId") == result["study"]


def test_a_thread_that_started_no_run_logs_to_the_main_threads_run(daemon: DaemonProcess, store: Path) -> None:
    # MLflow 3 would start a stray run for each such thread; a data or monitoring thread means the
    # process's run. A run a thread leaves active is ended at exit with the others.
    result = _ok(_run(
        """
        import json, threading, trackd
        main = trackd.start_run()
        def monitor():
            trackd.log_metric("gpu_util", 0.5)
            assert trackd.active_run() is main
        def leaves_its_own_run():
            trackd.start_run(run_name="left-active")
            trackd.log_metric("x", 1.0)
        for target in (monitor, leaves_its_own_run):
            thread = threading.Thread(target=target)
            thread.start()
            thread.join()
        assert trackd.active_run() is main
        print(json.dumps({"main": main.run_id}))
        """,
        _env(daemon, store),
    ))
    client = _mlflow(store)
    runs = {run.info.run_name: run for run in client.search_runs(["0"])}
    assert runs["left-active"].info.status == "FINISHED" and runs["left-active"].data.metrics == {"x": 1.0}
    [main] = [run for name, run in runs.items() if name != "left-active"]
    assert main.info.run_id == result["main"] and main.data.metrics == {"gpu_util": 0.5}
    assert main.info.status == "FINISHED"


def test_a_thread_that_started_no_run_logs_between_the_main_threads_runs_to_the_last_one(daemon: DaemonProcess, store: Path) -> None:
    # A sweep runs trials back to back in the main thread while a monitoring thread logs all
    # along. Its point in the gap between two trials started a run of its own, and every later
    # point went there: trials 1 and 2 got no system metrics, and a stray run stayed RUNNING.
    result = _ok(_run(
        """
        import json, threading, trackd
        logged, go = threading.Event(), threading.Event()
        def monitor():
            for step in range(3):
                go.wait(); go.clear()
                trackd.log_metric("sys/cpu", float(step), step=step)
                logged.set()
        threading.Thread(target=monitor, daemon=True).start()
        def tick():
            logged.clear(); go.set(); logged.wait()
        ids = []
        for trial in range(2):
            with trackd.start_run(run_name=f"trial-{trial}") as run:
                ids.append(run.run_id)
                tick()  # in the trial
            if trial == 0:
                tick()  # in the gap: to trial 0, the run the main thread last ended
        assert trackd.active_run() is None
        trackd.log_metric("main", 1.0)  # the main thread's own call after end_run starts a run, as MLflow's
        print(json.dumps({"ids": ids, "after": trackd.last_active_run().info.run_id}))
        """,
        _env(daemon, store),
    ))
    client = _mlflow(store)
    ids = result["ids"]
    assert isinstance(ids, list)
    first, second = (str(run_id) for run_id in ids)
    assert [(m.step, m.value) for m in client.get_metric_history(first, "sys/cpu")] == [(0, 0.0), (1, 1.0)]
    assert [(m.step, m.value) for m in client.get_metric_history(second, "sys/cpu")] == [(2, 2.0)]
    runs = client.search_runs(["0"])
    assert sorted(run.info.run_id for run in runs) == sorted([first, second, str(result["after"])])  # no stray run
    assert all(run.info.status == "FINISHED" for run in runs)


# A monitoring thread (system metrics) that goes on logging while exit or the SIGTERM handler ends
# the runs and delivers. Its points after the main thread's run was ended started a run of their
# own, which nothing ended: every preempted job left a stray RUNNING run, holding its last points.
# (It stops a few points after the run ended, while exit still delivers the loss points.)
MONITOR_AT_EXIT = """
import os, signal, threading, time, trackd
def monitor():
    step, late = 0, 0
    while late < 5:
        late += trackd.active_run() is None
        trackd.log_metric("sys/cpu", float(step), step=step)
        step += 1
        time.sleep(0.001)
trackd.start_run()
threading.Thread(target=monitor, daemon=True).start()
for step in range(100_000):  # delivering these at exit takes long enough for the monitor to log
    trackd.log_metric("loss", 1.0, step=step)
{ending}
"""


@pytest.mark.parametrize(
    ("ending", "status"), [("", "FINISHED"), ("os.kill(os.getpid(), signal.SIGTERM); time.sleep(30)", "KILLED")],
    ids=["exit", "sigterm"],
)
def test_a_thread_logging_while_exit_ends_the_runs_starts_no_stray_run(
    daemon: DaemonProcess, store: Path, ending: str, status: str
) -> None:
    result = _run(MONITOR_AT_EXIT.format(ending=ending), _env(daemon, store))
    assert result.returncode == (0 if status == "FINISHED" else -15) and result.stderr == "", result.stderr
    run = _only_run(store)
    assert run.info.status == status
    # Its late points went to the run it was logging to, none lost or doubled.
    steps = [m.step for m in _mlflow(store).get_metric_history(run.info.run_id, "sys/cpu")]
    assert sorted(steps) == list(range(len(steps)))


# A system-metrics monitor that logs at 1 kHz through the whole exit, to a healthy daemon. The
# sender stopped only once its buffer was empty and settled, which the monitor never allowed:
# about one exit in three waited out the 1 s stop timeout, then printed "the daemon ... did not
# answer within 1 s of close()" and "1 event is lost", and a Client made after exit closed the
# first one took the monitor's later points into a sender nothing closed. The main thread prints
# how many points the monitor had logged when exit began.
MONITOR_THROUGH_EXIT = """
import os, signal, threading, time, trackd
logged = 0
def monitor():
    global logged
    while True:
        trackd.log_metric("sys/cpu", float(logged), step=logged)
        logged += 1
        time.sleep(0.001)
trackd.start_run()
threading.Thread(target=monitor, daemon=True).start()
for step in range(20_000):
    trackd.log_metric("loss", 1.0, step=step)
time.sleep(0.1)
print(logged, flush=True)
{ending}
"""
# What may be said: nothing, or the one line counting the monitor's points logged after exit's last send.
LATE_LINE = re.compile(
    r"(trackd: \d+ events? (was|were) not delivered: logged by other threads after exit had sent its last batch \(.*\)\.\n)?"
)


@pytest.mark.parametrize(
    ("ending", "code"), [("", 0), ("os.kill(os.getpid(), signal.SIGTERM); time.sleep(30)", -15)], ids=["exit", "sigterm"],
)
def test_a_thread_logging_through_exit_does_not_hold_it_and_every_point_before_exit_is_delivered(
    daemon: DaemonProcess, tmp_path: Path, ending: str, code: int
) -> None:
    for attempt in range(5):  # the old code failed about one exit in three
        store = tmp_path / f"mlruns{attempt}"
        result = _run(MONITOR_THROUGH_EXIT.format(ending=ending), _env(daemon, store))
        assert result.returncode == code, result.stderr
        assert LATE_LINE.fullmatch(result.stderr), result.stderr
        run = _only_run(store)
        steps = sorted(m.step for m in _mlflow(store).get_metric_history(run.info.run_id, "sys/cpu"))
        # Every point logged before exit began, and what the final drain took, each exactly once.
        assert steps == list(range(len(steps))) and len(steps) >= int(result.stdout.split()[-1]), result.stderr


def test_mlflow_run_id_is_taken_once_as_mlflow_takes_it(daemon: DaemonProcess, store: Path) -> None:
    # Every later start_run() went into the launcher's run, their run names ignored: three folds
    # of a cross-validation became one run with a history of three scores.
    with Client(store, config=ClientConfig(socket_path=daemon.paths.socket, autostart=False)) as client:
        run_id = client.create_run(run_name="launcher").info.run_id
    result = _ok(_run(
        """
        import json, os, trackd
        ids = []
        for fold in range(3):
            with trackd.start_run(run_name=f"fold{fold}") as run:
                trackd.log_metric("score", fold)
                ids.append(run.run_id)
        print(json.dumps({"ids": ids, "left": os.environ.get("MLFLOW_RUN_ID")}))
        """,
        _env(daemon, store, MLFLOW_RUN_ID=run_id),
    ))
    ids = result["ids"]
    assert isinstance(ids, list) and ids[0] == run_id and len(set(ids)) == 3 and result["left"] is None
    names = {run.info.run_id: run.info.run_name for run in _mlflow(store).search_runs(["0"])}
    assert [names[i] for i in ids] == ["fold0", "fold1", "fold2"]  # the resumed run is renamed, as in MLflow


def test_resuming_a_run_applies_its_tags_and_description_and_returns_its_data(daemon: DaemonProcess, store: Path) -> None:
    with Client(store, config=ClientConfig(socket_path=daemon.paths.socket, autostart=False)) as client:
        run_id = client.create_run(run_name="first").info.run_id
        client.log_param(run_id, "lr", 0.1)
        client.log_metric(run_id, "loss", 0.5)
        client.set_terminated(run_id, "KILLED")
    result = _ok(_run(
        f"""
        import json, trackd
        with trackd.start_run(run_id={run_id!r}, run_name="again", tags={{"phase": "2"}}, description="resumed") as run:
            print(json.dumps({{"data": [run.data.params, run.data.metrics, run.data.tags.get("phase")], "name": run.info.run_name}}))
        """,
        _env(daemon, store),
    ))
    assert result == {"data": [{"lr": "0.1"}, {"loss": 0.5}, "2"], "name": "again"}
    run = _mlflow(store).get_run(run_id)
    assert (run.info.run_name, run.info.status) == ("again", "FINISHED")
    assert run.data.tags["phase"] == "2" and run.data.tags["mlflow.note.content"] == "resumed"


def test_set_experiment_of_a_deleted_experiment_is_refused_as_mlflows_is(daemon: DaemonProcess, store: Path) -> None:
    # By name it raised a DeliveryError worded for creating the experiment; by id it was taken,
    # and the runs started in it were refused only at flush().
    with Client(store, config=ClientConfig(socket_path=daemon.paths.socket, autostart=False)) as client:
        experiment_id = client.create_experiment("gone")
    _mlflow(store).delete_experiment(experiment_id)
    for call in ("trackd.set_experiment('gone')", f"trackd.set_experiment(experiment_id={experiment_id!r})"):
        result = _ok(_run(
            f"""
            import json, trackd
            try:
                {call}
            except trackd.InvalidArgument as exc:
                print(json.dumps({{"error": str(exc)}}))
            """,
            _env(daemon, store),
        ))
        assert result == {"error": (
            "Cannot set a deleted experiment 'gone' as the active experiment. You can restore the experiment, "
            "or permanently delete the experiment to create a new one."
        )}, call


@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="counts the bytes read in /proc/self/io")
def test_resuming_a_run_reads_its_metric_files_only_when_its_data_is_looked_at(daemon: DaemonProcess, store: Path) -> None:
    # start_run(run_id=...) read every metric file of the run (2.7 s for 390,000 points): a job
    # requeued after preemption, resuming at every rank, logged nothing for seconds.
    with Client(store, config=ClientConfig(socket_path=daemon.paths.socket, autostart=False)) as client:
        run_id = client.create_run(run_name="long").info.run_id
        client.log_metric(run_id, "loss", 0.5, step=0)
        client.set_terminated(run_id, "KILLED")
    history = store / "0" / run_id / "metrics" / "loss"
    with history.open("a") as lines:  # 5 MB of history, as a long run leaves it
        lines.writelines(f"1700000000000 {step / 7} {step}\n" for step in range(1, 200_001))
    result = _ok(_run(
        f"""
        import json, trackd

        def read_bytes():
            with open("/proc/self/io") as io:
                return int(next(line for line in io if line.startswith("rchar:")).split()[1])

        with trackd.start_run():  # loads what a run needs
            pass
        before = read_bytes()
        with trackd.start_run(run_id={run_id!r}) as run:
            read_at_start = read_bytes() - before
            loss = run.data.metrics["loss"]
        print(json.dumps({{"read_at_start": read_at_start, "loss": loss}}))
        """,
        _env(daemon, store),
    ))
    assert result["loss"] == 200_000 / 7
    assert isinstance(result["read_at_start"], int) and result["read_at_start"] < 1_000_000, result


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("trackd.set_experiment('other')", "does not match the run's experiment ID 0"),
        ("", None),  # the run is deleted below
    ],
    ids=["other-experiment", "deleted-run"],
)
def test_resuming_a_run_of_another_experiment_or_a_deleted_one_is_refused(
    daemon: DaemonProcess, store: Path, setup: str, message: str | None
) -> None:
    # Both used to attach; a deleted run's points were then refused one by one, on stderr at exit.
    with Client(store, config=ClientConfig(socket_path=daemon.paths.socket, autostart=False)) as client:
        run_id = client.create_run(run_name="r").info.run_id
        client.flush()
    if message is None:
        _mlflow(store).delete_run(run_id)
        message = "because it is in the deleted state"
    completed = _run(f"import trackd\n{setup}\ntrackd.start_run(run_id={run_id!r})\n", _env(daemon, store))
    assert completed.returncode == 1 and "InvalidArgument" in completed.stderr and message in completed.stderr


def test_a_parent_run_id_that_is_not_the_active_run_is_refused(daemon: DaemonProcess, store: Path) -> None:
    completed = _run(
        "import trackd\ntrackd.start_run()\ntrackd.start_run(nested=True, parent_run_id='c' * 32)\n", _env(daemon, store)
    )
    assert completed.returncode == 1 and "does not match the specified parent_run_id" in completed.stderr


def test_a_timestamp_of_0_is_now_as_in_mlflows_fluent_calls(daemon: DaemonProcess, store: Path) -> None:
    # MLflow's fluent log_metric(s) take `timestamp or get_current_time_millis()`; trackd stored 0.
    result = _ok(_run(
        """
        import json, time, trackd
        before = int(time.time() * 1000)
        with trackd.start_run() as run:
            trackd.log_metric("a", 1.0, timestamp=0)
            trackd.log_metrics({"b": 2.0}, timestamp=0)
        print(json.dumps({"run_id": run.run_id, "before": before}))
        """,
        _env(daemon, store),
    ))
    client = _mlflow(store)
    for key in ("a", "b"):
        [metric] = client.get_metric_history(str(result["run_id"]), key)
        assert metric.timestamp >= int(result["before"])  # type: ignore[call-overload]


def test_is_tracking_uri_set_and_flush_async_logging_answer_as_mlflows(daemon: DaemonProcess, tmp_path: Path) -> None:
    # transformers' MLflowCallback asks is_tracking_uri_set() before choosing a store, and flushes
    # with flush_async_logging(): with `import trackd as mlflow` both were AttributeErrors.
    store = tmp_path / "store"
    result = _ok(_run(
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
        _env(daemon, None),
    ))
    assert result == {"before": False, "from_env": True, "after": True, "written": 1}
