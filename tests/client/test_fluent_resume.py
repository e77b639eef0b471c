"""``start_run(run_id=...)`` and ``MLFLOW_RUN_ID`` attach to or resume a run as MLflow does, and only
rank 0 of a distributed job reopens or ends a shared run."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from fluent_helpers import fluent_env, mlflow_reader, quiet_result, only_run, run_child
from helpers import DaemonProcess, inherited_env

from trackd import Client, ClientConfig


@pytest.mark.parametrize(
    "code",
    [
        "import trackd\ntrackd.log_metric('loss', 1.0)\n",
        "import trackd\nwith trackd.start_run():\n    trackd.log_metric('loss', 1.0)\n",
        "import trackd\ntrackd.start_run()\ntrackd.log_metric('loss', 1.0)\ntrackd.end_run()\n",
    ],
    ids=["implicit", "with-start_run", "end_run"],
)
def test_mlflow_run_id_of_a_running_run_nobody_owns_resumes_it_and_ends_it_as_mlflow_does(
    daemon: DaemonProcess, store: Path, code: str
) -> None:
    # A Client's run is in no process's will (its status is the caller's): the process given its id
    # co-owns it, and its end is the last live owner's, FINISHED, as MLflow's start_run ends it. It
    # only detached, and a requeued job resuming a run its dead last attempt left RUNNING never ended it.
    with Client(store, config=ClientConfig(socket_path=daemon.paths.socket, autostart=False)) as client:
        run_id = client.create_run(run_name="launcher").info.run_id
    quiet_result(run_child(code, fluent_env(daemon, store, MLFLOW_RUN_ID=run_id)))
    run = only_run(store)
    assert (run.info.run_id, run.info.run_name, run.info.status) == (run_id, "launcher", "FINISHED")
    assert run.info.end_time is not None
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
    result = quiet_result(run_child(code, fluent_env(daemon, store, **({"RANK": rank} if rank is not None else {}))))
    run = only_run(store)
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
    result = quiet_result(run_child(
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
        {**inherited_env(), "MLFLOW_ALLOW_FILE_STORE": "true", "MLFLOW_DISABLE_TELEMETRY": "true"},
    ))
    assert result == {"returned": "RUNNING", "during": "RUNNING", "after": "FINISHED"}


def test_start_run_with_a_new_run_id_creates_that_run(daemon: DaemonProcess, store: Path) -> None:
    run_id = uuid.uuid4().hex
    quiet_result(run_child(f"import trackd\nwith trackd.start_run(run_id={run_id!r}):\n    trackd.log_metric('loss', 1.0)\n", fluent_env(daemon, store)))
    run = only_run(store)
    assert (run.info.run_id, run.info.status) == (run_id, "FINISHED")


@pytest.mark.parametrize(
    ("ending", "status"),
    [("trackd.end_run()", "RUNNING"), ("", "RUNNING"), ("trackd.end_run('FINISHED')", "FINISHED"), ("trackd.end_run('FAILED')", "FAILED")],
    ids=["end_run", "exit", "end_run-FINISHED", "end_run-FAILED"],
)
def test_rank_1_leaves_a_shared_run_running_unless_given_a_status(daemon: DaemonProcess, store: Path, ending: str, status: str) -> None:
    run_id = uuid.uuid4().hex
    code = f"import trackd\ntrackd.start_run(run_id={run_id!r})\ntrackd.log_metric('loss', 1.0)\n{ending}\n"
    quiet_result(run_child(code, fluent_env(daemon, store, RANK="1")))
    run = only_run(store)
    assert (run.info.run_id, run.info.status, run.data.metrics) == (run_id, status, {"loss": 1.0})


def test_mlflow_run_id_is_taken_once_as_mlflow_takes_it(daemon: DaemonProcess, store: Path) -> None:
    # Every later start_run() went into the launcher's run, their run names ignored: three folds
    # of a cross-validation became one run with a history of three scores.
    with Client(store, config=ClientConfig(socket_path=daemon.paths.socket, autostart=False)) as client:
        run_id = client.create_run(run_name="launcher").info.run_id
    result = quiet_result(run_child(
        """
        import json, os, trackd
        ids = []
        for fold in range(3):
            with trackd.start_run(run_name=f"fold{fold}") as run:
                trackd.log_metric("score", fold)
                ids.append(run.run_id)
        print(json.dumps({"ids": ids, "left": os.environ.get("MLFLOW_RUN_ID")}))
        """,
        fluent_env(daemon, store, MLFLOW_RUN_ID=run_id),
    ))
    ids = result["ids"]
    assert isinstance(ids, list) and ids[0] == run_id and len(set(ids)) == 3 and result["left"] is None
    names = {run.info.run_id: run.info.run_name for run in mlflow_reader(store).search_runs(["0"])}
    assert [names[i] for i in ids] == ["fold0", "fold1", "fold2"]  # the resumed run is renamed, as in MLflow


def test_resuming_a_run_applies_its_tags_and_description_and_returns_its_data(daemon: DaemonProcess, store: Path) -> None:
    with Client(store, config=ClientConfig(socket_path=daemon.paths.socket, autostart=False)) as client:
        run_id = client.create_run(run_name="first").info.run_id
        client.log_param(run_id, "lr", 0.1)
        client.log_metric(run_id, "loss", 0.5)
        client.set_terminated(run_id, "KILLED")
    result = quiet_result(run_child(
        f"""
        import json, trackd
        with trackd.start_run(run_id={run_id!r}, run_name="again", tags={{"phase": "2"}}, description="resumed") as run:
            print(json.dumps({{"data": [run.data.params, run.data.metrics, run.data.tags.get("phase")], "name": run.info.run_name}}))
        """,
        fluent_env(daemon, store),
    ))
    assert result == {"data": [{"lr": "0.1"}, {"loss": 0.5}, "2"], "name": "again"}
    run = mlflow_reader(store).get_run(run_id)
    assert (run.info.run_name, run.info.status) == ("again", "FINISHED")
    assert run.data.tags["phase"] == "2" and run.data.tags["mlflow.note.content"] == "resumed"


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
    result = quiet_result(run_child(
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
        fluent_env(daemon, store),
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
        mlflow_reader(store).delete_run(run_id)
        message = "because it is in the deleted state"
    completed = run_child(f"import trackd\n{setup}\ntrackd.start_run(run_id={run_id!r})\n", fluent_env(daemon, store))
    assert completed.returncode == 1 and "InvalidArgument" in completed.stderr and message in completed.stderr
