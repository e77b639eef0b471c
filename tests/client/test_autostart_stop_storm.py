"""A job whose every daemon is stopped before it answers starts no more daemons than one start's bound, and says they were stopped.

A daemon gone between the launcher's probe (it answered) and the client's handshake is started again
at once, and each such round was a launcher start with its own bound (MAX_ENDED_STARTS daemons), so a
storm of `trackd daemon stop`s made one connect attempt start up to 9 daemons; when the rounds ran
out the exit said "no daemon answers ... and none could be started" of daemons that had started and
been stopped. The storm is made here: the job's sender thread runs `trackd daemon stop` before its
second connect to each daemon it finds listening (the handshake after the launcher's probe: the
client starts one again), or ("alternate") before its first connect to the 1st, 3rd, ... (the
launcher's probe: the launcher starts one again) and its second to the 2nd, 4th, ... Old code: 3
daemons then 6, each time saying "none could be started".
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from trackd._paths import DaemonPaths
from trackd.client._launcher import MAX_ENDED_STARTS

from helpers import HOOK_DAEMON_CONNECTS, SHORT_JOB, Child, sitecustomize_env

# In the daemon's interpreter: note its pid. In the job's: before a connect to a daemon it finds
# listening, run `trackd daemon stop` first when it is the one the storm stops at (the hook is off
# in the stop's process).
STOP_EVERY_DAEMON = HOOK_DAEMON_CONNECTS + """
import subprocess, sys
if sys.orig_argv[1:3] == ["-m", "trackd.daemon"]:
    with open(os.environ["TRACKD_TEST_STARTS"], "a") as starts:
        starts.write(f"{os.getpid()}\\n")
elif "TRACKD_TEST_STOPS" in os.environ:
    def _stop_in_the_storm(pid, nth, count):
        calm = nth > int(os.environ.get("TRACKD_TEST_STORM_LENGTH", "1000"))  # the storm is over
        if not calm and count == (1 if nth % 2 and os.environ["TRACKD_TEST_STORM"] == "alternate" else 2):
            env = {name: value for name, value in os.environ.items() if name != "TRACKD_TEST_STOPS"}
            stop = subprocess.run([sys.executable, "-m", "trackd", "daemon", "stop"], env=env, capture_output=True, text=True)
            with open(os.environ["TRACKD_TEST_STOPS"], "a") as stops:
                stops.write(f"{pid} {stop.returncode} {stop.stdout.strip()}\\n")

    _hook_daemon_connects(_stop_in_the_storm)
"""

@pytest.mark.parametrize("storm", ["handshake", "alternate"])
def test_a_storm_of_stops_starts_at_most_one_starts_bound_of_daemons_and_says_they_were_stopped(
    paths: DaemonPaths, tmp_path: Path, storm: str,
) -> None:
    starts, stops = tmp_path / "starts", tmp_path / "stops"
    env = sitecustomize_env(
        paths.socket, tmp_path, STOP_EVERY_DAEMON, TRACKD_TEST_STARTS=str(starts), TRACKD_TEST_STOPS=str(stops),
        TRACKD_TEST_PID_FILE=str(paths.pid), TRACKD_TEST_STORM=storm, TRACKD_EXIT_TIMEOUT="60",
    )
    with Child(SHORT_JOB, [], env) as job:
        assert job.wait(120) == 0, job.stderr()
    started = starts.read_text().split()
    stopped = stops.read_text().splitlines()
    # Each daemon started was stopped (by `trackd daemon stop`, which said so), and one start's bound
    # holds them all. Old code, "alternate": 6 started, 6 stopped.
    assert all(line.split()[1] == "0" and "stopped after writing everything" in line for line in stopped), stopped
    assert sorted(line.split()[0] for line in stopped) == sorted(started), (started, stopped)
    assert len(started) == MAX_ENDED_STARTS, (started, stopped)
    # Old code: "... no daemon answers at ... and none could be started; they are spooled to ...".
    stderr = job.stderr()
    assert "none could be started" not in stderr, stderr
    assert "4 events were not delivered: no daemon answers at" in stderr, stderr
    assert f"was stopped (`trackd daemon stop`, a SIGTERM) before it answered this process ({MAX_ENDED_STARTS} starts, each stopped)" in stderr, stderr
    spooled = list((tmp_path / "spool").glob("*.spool"))
    assert len(spooled) == 1 and "spooled to" in stderr, (stderr, spooled)


# Logs for a while after its start: the storm (its first daemons stopped) ends meanwhile.
LONG_JOB = """
import time, trackd
with trackd.start_run() as run:
    trackd.log_param("p", "1")
    for step in range(40):
        trackd.log_metric("loss", 0.5, step=step)
        time.sleep(0.1)
print("run", run.info.run_id, flush=True)
"""


def test_a_job_whose_first_daemons_were_stopped_starts_another_once_the_stops_end(paths: DaemonPaths, tmp_path: Path) -> None:
    # After MAX_ENDED_STARTS stopped daemons the next start waited 30 s (a bad flag's interval), so
    # a job logging for 4 s more started none and its exit spooled it all; the code before the shared
    # bound started one a second later and delivered everything.
    starts, stops = tmp_path / "starts", tmp_path / "stops"
    env = sitecustomize_env(
        paths.socket, tmp_path, STOP_EVERY_DAEMON, TRACKD_TEST_STARTS=str(starts), TRACKD_TEST_STOPS=str(stops),
        TRACKD_TEST_PID_FILE=str(paths.pid), TRACKD_TEST_STORM="handshake", TRACKD_TEST_STORM_LENGTH=str(MAX_ENDED_STARTS),
        TRACKD_EXIT_TIMEOUT="60",
    )
    with Child(LONG_JOB, [], env) as job:
        assert job.wait(120) == 0, job.stderr()
    assert len(stops.read_text().splitlines()) == MAX_ENDED_STARTS
    assert len(starts.read_text().split()) == MAX_ENDED_STARTS + 1, job.stderr()
    assert "not delivered" not in job.stderr() and not list((tmp_path / "spool").glob("*.spool")), job.stderr()
    run_id = job.out[-1].split()[1]
    history = MlflowClient(tracking_uri=str(tmp_path / "mlruns")).get_metric_history(run_id, "loss")
    assert sorted(m.step for m in history) == list(range(40))
