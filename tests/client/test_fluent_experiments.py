"""``set_experiment``: created once by name across processes, passed on to child processes, and refused
as MLflow refuses it for a deleted experiment or with no daemon to ask."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from fluent_helpers import TRACKING_VARIABLES, fluent_env, mlflow_reader, quiet_result, run_child
from helpers import DaemonProcess, child_env
from mlflow.entities import ViewType

from trackd import Client, ClientConfig


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
    env = fluent_env(daemon, store)
    children = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    gate.touch()
    outputs = [child.communicate(timeout=60) for child in children]
    results = [subprocess.CompletedProcess(c.args, c.returncode, out, err) for c, (out, err) in zip(children, outputs)]
    first, second = (quiet_result(r)["experiment_id"] for r in results)
    assert first == second
    experiments = mlflow_reader(store).search_experiments(view_type=ViewType.ALL)
    assert [e.experiment_id for e in experiments if e.name == "shared"] == [first]
    assert len(mlflow_reader(store).search_runs([str(first)])) == 2


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
    result = run_child(code, env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Cannot get or create experiment 'mnist': the trackd daemon at {tmp_path}/none.sock is unreachable")
    assert "spooled to None" not in result.stderr
    # The exception says the daemon is unreachable; with nothing to deliver, exit adds nothing, and
    # the sender, which gave up within a second, adds no "unreachable ... Retrying." beside it.
    assert [line for line in result.stderr.splitlines() if line.startswith("trackd:")] == [], result.stderr


def test_set_experiment_reaches_child_processes_as_mlflows_does(daemon: DaemonProcess, store: Path) -> None:
    # MLflow's set_experiment sets MLFLOW_EXPERIMENT_ID "so that subprocess can inherit it".
    # trackd's did not: ranks a launcher started after set_experiment created the shared run (and
    # their nested runs) in the Default experiment, and a rank-0 creation in the launcher's
    # experiment arriving second was refused as a run of another experiment.
    child = "import sys, trackd\nwith trackd.start_run(run_id=sys.argv[1]):\n    trackd.log_metric('child', 1.0)\n"
    result = quiet_result(run_child(
        f"""
        import json, os, subprocess, sys, uuid, trackd
        experiment = trackd.set_experiment("launched")
        run_id = uuid.uuid4().hex
        done = subprocess.run([sys.executable, "-c", {child!r}, run_id], capture_output=True, text=True)
        print(json.dumps({{"code": done.returncode, "stderr": done.stderr, "run_id": run_id,
                          "experiment_id": experiment.experiment_id, "env": os.environ.get("MLFLOW_EXPERIMENT_ID")}}))
        """,
        fluent_env(daemon, store),
    ))
    assert (result["code"], result["stderr"], result["env"]) == (0, "", result["experiment_id"])
    run = mlflow_reader(store).get_run(str(result["run_id"]))
    assert (run.info.experiment_id, run.data.metrics) == (result["experiment_id"], {"child": 1.0})


def test_set_experiment_of_a_deleted_experiment_is_refused_as_mlflows_is(daemon: DaemonProcess, store: Path) -> None:
    # By name it raised a DeliveryError worded for creating the experiment; by id it was taken,
    # and the runs started in it were refused only at flush().
    with Client(store, config=ClientConfig(socket_path=daemon.paths.socket, autostart=False)) as client:
        experiment_id = client.create_experiment("gone")
    mlflow_reader(store).delete_experiment(experiment_id)
    for call in ("trackd.set_experiment('gone')", f"trackd.set_experiment(experiment_id={experiment_id!r})"):
        result = quiet_result(run_child(
            f"""
            import json, trackd
            try:
                {call}
            except trackd.InvalidArgument as exc:
                print(json.dumps({{"error": str(exc)}}))
            """,
            fluent_env(daemon, store),
        ))
        assert result == {"error": (
            "Cannot set a deleted experiment 'gone' as the active experiment. You can restore the experiment, "
            "or permanently delete the experiment to create a new one."
        )}, call
