"""A thread that started a run of its own and ended it logs as in MLflow 3 (a new run of its own),
not into the main thread's run, where a thread that never started one still logs."""

from __future__ import annotations

import json
from pathlib import Path

from fluent_helpers import fluent_env, mlflow_reader, quiet_result, run_child
from helpers import DaemonProcess

# A sweep: the main thread's run is the parent; each trial thread runs its trial in a run of its
# own, then logs once more with no run active; a monitoring thread never starts a run.
TRIALS_THEN_LOOSE = """
import json, threading, trackd
parent = trackd.start_run(run_name="sweep")
after = {}
def trial(i):
    with trackd.start_run(run_name=f"trial-{i}"):
        trackd.log_metric("inside", float(i))
    trackd.log_metric("after", float(i))
    after[i] = trackd.active_run().info.run_name
def monitor():
    trackd.log_metric("gpu", 0.5)
    after["monitor"] = trackd.active_run().info.run_name
threads = [threading.Thread(target=trial, args=(i,)) for i in range(3)] + [threading.Thread(target=monitor)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
trackd.end_run()
print(json.dumps({"after": after}))
"""


def test_a_thread_that_ended_its_own_run_logs_to_a_new_run_of_its_own_not_the_main_threads(
    daemon: DaemonProcess, store: Path
) -> None:
    # The trials' "after" points all went into the sweep's run, mixed into one key: wrong data in
    # the run the user looks at. MLflow 3 starts a run for each such thread.
    result = quiet_result(run_child(TRIALS_THEN_LOOSE, fluent_env(daemon, store)))
    after: dict[str, str] = result["after"]  # type: ignore[assignment]
    runs = {run.info.run_name: run for run in mlflow_reader(store).search_runs(["0"])}
    assert runs["sweep"].data.metrics == {"gpu": 0.5} and after["monitor"] == "sweep"
    for i in range(3):
        assert runs[f"trial-{i}"].data.metrics == {"inside": float(i)}
        loose = runs[after[str(i)]]
        assert loose.info.run_name not in ("sweep", *(f"trial-{j}" for j in range(3)))
        # A run of its own, started by the log call and ended at exit as any such run.
        assert loose.data.metrics == {"after": float(i)} and loose.info.status == "FINISHED"
    assert len(runs) == 1 + 3 + 3
    assert all(run.info.status == "FINISHED" for run in runs.values())


# A trial thread, alive through exit (daemon=True), asked from an atexit hook that runs after
# trackd's (registered before import trackd: atexit is last-in, first-out) where its log calls go.
ASKED_AT_EXIT = """
import atexit, json, queue, threading
asks, answers = queue.Queue(), queue.Queue()
def at_exit():
    asks.put(None)
    print(json.dumps({"at_exit": answers.get(timeout=30)}), flush=True)
atexit.register(at_exit)
import trackd
trackd.start_run(run_name="sweep")
def trial():
    with trackd.start_run(run_name="trial") as run:
        answers.put(run.run_id)
    while True:
        asks.get()
        answers.put(trackd.get_artifact_uri())
threading.Thread(target=trial, daemon=True).start()
print(json.dumps({"trial": answers.get(timeout=30)}), flush=True)
"""


def test_a_thread_that_ended_its_own_run_logs_to_it_while_exit_ends_the_runs(daemon: DaemonProcess, store: Path) -> None:
    # While exit ends the runs a new run would never be ended: the thread logs to the last run it
    # started, not to the main thread's (the sweep's), where its points used to go.
    result = run_child(ASKED_AT_EXIT, fluent_env(daemon, store))
    assert result.returncode == 0 and result.stderr == "", result.stderr
    said = [json.loads(line) for line in result.stdout.splitlines()]
    assert said[1]["at_exit"].endswith(f"/{said[0]['trial']}/artifacts")
    assert sorted(run.info.run_name for run in mlflow_reader(store).search_runs(["0"])) == ["sweep", "trial"]
