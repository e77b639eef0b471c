"""A daemon stopped after it answered its starter's probe, before that client's handshake, is started again at once.

`trackd daemon stop` landing between the launcher's probe (the daemon it started answered) and the
client's handshake made the handshake find no daemon, and the next start waited the spawn interval
(1 s): a short job's exit gave up first and spooled all it had logged for a `trackd sync` (1 of 480
jobs when stops met rounds of 8 jobs). The stop lands in that window here: the job's sender thread runs `trackd daemon stop` itself at the first connect to
the socket after one succeeded (the probe).
"""

from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient

from trackd._paths import DaemonPaths

from helpers import SHORT_JOB, Child, sitecustomize_env

# In the job's interpreter (not the daemon's): once a connect to the daemon's socket has succeeded
# (the probe), the next connect to it (the handshake) first runs `trackd daemon stop`, once, and
# notes what it printed. Only the sender thread waits for it: the job goes on to its exit's flush.
STOP_BEFORE_THE_HANDSHAKE = """
import os, socket, subprocess, sys
if sys.orig_argv[1:3] != ["-m", "trackd.daemon"] and "TRACKD_TEST_STOPPED" in os.environ:
    _connect, _state = socket.socket.connect, {"answered": False, "stopped": False}

    def connect(self, address):
        if address == os.environ["TRACKD_SOCKET"] and _state["answered"] and not _state["stopped"]:
            _state["stopped"] = True
            env = {name: value for name, value in os.environ.items() if name not in ("PYTHONPATH", "TRACKD_TEST_STOPPED")}
            stop = subprocess.run([sys.executable, "-m", "trackd", "daemon", "stop"], env=env, capture_output=True, text=True)
            with open(os.environ["TRACKD_TEST_STOPPED"], "w") as stopped:
                stopped.write(f"{stop.returncode} {stop.stdout}")
        result = _connect(self, address)
        if address == os.environ["TRACKD_SOCKET"]:
            _state["answered"] = True
        return result

    socket.socket.connect = connect
"""

def test_a_daemon_stopped_between_the_probe_and_the_handshake_is_started_again_at_once(paths: DaemonPaths, tmp_path: Path) -> None:
    stopped = tmp_path / "stopped"
    env = sitecustomize_env(paths.socket, tmp_path, STOP_BEFORE_THE_HANDSHAKE, TRACKD_TEST_STOPPED=str(stopped))
    with Child(SHORT_JOB, [], env) as job:
        assert job.wait(60) == 0, job.stderr()
    assert stopped.read_text().startswith("0 trackd daemon (pid "), stopped.read_text()
    # Old code: "4 events were not delivered: no daemon answers at ...; ... spooled", and a spool
    # file for `trackd sync`. (A "waiting" line may come: the exit's flush waits quietly for 1 s.)
    spooled = list((tmp_path / "spool").glob("*.spool"))
    assert "not delivered" not in job.stderr() and not spooled, (job.stderr(), spooled)
    run_id = job.out[-1].split()[1]
    run = MlflowClient(tracking_uri=str(tmp_path / "mlruns")).get_run(run_id)
    assert (run.info.status, run.data.params, run.data.metrics) == ("FINISHED", {"p": "1"}, {"loss": 0.5})
