"""Batches sent ahead of the Welcome to a started daemon that then refused as shutting down are resent.

A client with nothing to resend sends its batches right after its Hello, before the daemon's
Welcome. When `trackd daemon stop` met the daemon a client had just started, after it accepted
that client's handshake and before it read the Hello, the daemon refused it as shutting down and
read nothing of it, and the client started another at once (66bd617). But whether to resend was
decided by the attempt made before the start (no daemon: it sent nothing), not by the handshake
the daemon refused: what that daemon never read was not sent again, the new daemon received
nothing from this client ("0 events received from it"), and the exit said "4 events were not
delivered: the daemon ... did not answer within 1 s of close()" and spooled them for `trackd sync`
(1 of 960 jobs in rounds of 8 short jobs meeting stops). The stop lands exactly there: the daemon's
shutdown waits, before it closes its socket, until the job has sent its Hello and batches on a
connection the daemon accepted.
"""

from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient

from trackd._paths import DaemonPaths

from helpers import Child, sitecustomize_env

# In every interpreter of the test (the daemon the job starts inherits its PYTHONPATH).
# The first daemon: notes each connection it accepts, and at its shutdown, as it logs that it closes
# its socket (its event loop blocked there: it reads nothing), notes "closing" and waits for "sent".
# The job: its second connect to the socket that succeeds (after the probe: the daemon it started
# answered) is the handshake; once the daemon accepted it, the Hello's send starts `trackd daemon
# stop` and waits for "closing" and for the job's main thread to have logged ("logged"); after the
# next send on that connection (the batches, ahead of the Welcome) it notes "sent".
STOP_AFTER_SENDING_AHEAD = """
import asyncio, logging, os, socket, subprocess, sys, time
MARKS = os.environ.get("TRACKD_TEST_MARKS")

def _path(name):
    return os.path.join(MARKS, name)

def _wait_for(test):
    deadline = time.monotonic() + 30
    while not test() and time.monotonic() < deadline:
        time.sleep(0.01)

def _lines(name):
    try:
        with open(_path(name)) as mark:
            return len(mark.readlines())
    except FileNotFoundError:
        return 0

def _mark(name):
    with open(_path(name), "a") as mark:
        mark.write("1\\n")

if MARKS and sys.orig_argv[1:3] == ["-m", "trackd.daemon"]:
    _made, _factory = asyncio.StreamReaderProtocol.connection_made, logging.getLogRecordFactory()

    def connection_made(self, transport):
        _made(self, transport)
        if not os.path.exists(_path("closing")):
            asyncio.get_running_loop().call_soon(_mark, "accepted")  # after the connection's task began

    def record(*args, **kwargs):
        made = _factory(*args, **kwargs)
        if made.msg == "Shutdown: closing the socket to new connections" and not os.path.exists(_path("closing")):
            _mark("closing")
            _wait_for(lambda: os.path.exists(_path("sent")))
        return made

    asyncio.StreamReaderProtocol.connection_made = connection_made
    logging.setLogRecordFactory(record)
elif MARKS:
    _connect, _send = socket.socket.connect, socket.socket.send
    _state = {"connected": 0, "held": None, "sends": 0}

    def connect(self, address):
        if address != os.environ["TRACKD_SOCKET"] or _state["held"] is not None:
            return _connect(self, address)
        accepted = _lines("accepted")
        result = _connect(self, address)
        _state["connected"] += 1
        if _state["connected"] == 2:
            _state["held"] = self
            _wait_for(lambda: _lines("accepted") > accepted)
        return result

    def send(self, data, *args):
        if self is not _state["held"]:
            return _send(self, data, *args)
        _state["sends"] += 1
        if _state["sends"] == 1:
            env = {name: value for name, value in os.environ.items() if name not in ("PYTHONPATH", "TRACKD_TEST_MARKS")}
            with open(_path("stop"), "w") as out:
                subprocess.Popen([sys.executable, "-m", "trackd", "daemon", "stop"], env=env, stdout=out, stderr=out)
            _wait_for(lambda: os.path.exists(_path("closing")) and os.path.exists(_path("logged")))
        sent = _send(self, data, *args)
        if _state["sends"] == 2:
            _mark("sent")
        return sent

    socket.socket.connect, socket.socket.send = connect, send
"""

JOB = """
import os, trackd
with trackd.start_run() as run:
    trackd.log_param("p", "1")
    trackd.log_metric("loss", 0.5)
    open(os.path.join(os.environ["TRACKD_TEST_MARKS"], "logged"), "w").close()  # (end_run waits for the daemon)
print("run", run.info.run_id, flush=True)
"""


def test_batches_sent_ahead_to_a_started_daemon_that_refused_as_shutting_down_are_resent_to_the_next(
    paths: DaemonPaths, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    env = sitecustomize_env(paths.socket, tmp_path, STOP_AFTER_SENDING_AHEAD, TRACKD_TEST_MARKS=str(marks))
    with Child(JOB, [], env) as job:
        assert job.wait(60) == 0, job.stderr()
    assert {path.name for path in marks.iterdir()} >= {"closing", "sent", "logged"}, sorted(path.name for path in marks.iterdir())
    assert (marks / "stop").read_text().startswith("trackd daemon (pid "), (marks / "stop").read_text()
    log = paths.log.read_text()
    # The first daemon refused the handshake it accepted, unread: it received nothing of this job.
    assert "Shutdown complete: 0 events received" in log, log
    # Old code: "4 events were not delivered: the daemon at ... did not answer within 1 s of
    # close(); they are spooled to ...", a spool file for `trackd sync`, and the second daemon's
    # log said "0 events received from it".
    spooled = list((tmp_path / "spool").glob("*.spool"))
    assert "not delivered" not in job.stderr() and not spooled, (job.stderr(), spooled)
    run_id = job.out[-1].split()[1]
    run = MlflowClient(tracking_uri=str(tmp_path / "mlruns")).get_run(run_id)
    assert (run.info.status, run.data.params, run.data.metrics) == ("FINISHED", {"p": "1"}, {"loss": 0.5})
