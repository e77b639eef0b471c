"""A daemon that answered its starter's probe and was killed, or crashed, by the handshake is said to have been, not "stopped".

A daemon gone between the launcher's probe (it answered) and the client's handshake was counted as
killed only if the client's ``poll()`` already had its exit status, else as stopped: a SIGKILLed
daemon's socket refuses before its process is reaped (and the reaper thread, in ``wait()``, makes
``poll()`` say None meanwhile), so one killed every time was "stopped (`trackd daemon stop`, a
SIGTERM) before it answered this process (3 starts, each stopped)", and one that exited with code 1
was "stopped" whatever ``poll()`` said. Here the job's sender thread ends each daemon it finds
listening just before its handshake (the second connect to it, after the launcher's probe), with
SIGKILL, or with SIGUSR1, on which the daemon exits with code 1 (a crash), and waits until nothing
listens; it never reaps the daemon (its reaper does).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from trackd._paths import DaemonPaths
from trackd.client._launcher import MAX_ENDED_STARTS

from helpers import HOOK_DAEMON_CONNECTS, SHORT_JOB, Child, sitecustomize_env

# In the daemon's interpreter: note its pid, and exit with code 1 on SIGUSR1. In the job's: before
# the second connect to each daemon found listening (its handshake), send it the signal
# TRACKD_TEST_END names and wait until its socket refuses connections.
END_EACH_DAEMON_AT_ITS_HANDSHAKE = HOOK_DAEMON_CONNECTS + """
import signal, sys, time
if sys.orig_argv[1:3] == ["-m", "trackd.daemon"]:
    with open(os.environ["TRACKD_TEST_STARTS"], "a") as starts:
        starts.write(f"{os.getpid()}\\n")
    signal.signal(signal.SIGUSR1, lambda signum, frame: os._exit(1))
elif "TRACKD_TEST_END" in os.environ:
    def _end_at_the_handshake(pid, nth, count):
        if count == 2:
            os.kill(pid, getattr(signal, os.environ["TRACKD_TEST_END"]))
            while _listening():
                time.sleep(0.001)

    _listening = _hook_daemon_connects(_end_at_the_handshake)
"""


@pytest.mark.parametrize(
    ("signal_name", "said"),
    [
        ("SIGKILL", f"was killed by SIGKILL (signal 9) before it answered ({MAX_ENDED_STARTS} starts, each killed)"),
        ("SIGUSR1", f"exited with code 1 before it answered ({MAX_ENDED_STARTS} starts, each exited with an error)"),
    ],
)
def test_daemons_killed_or_crashed_at_the_handshake_are_said_to_be(paths: DaemonPaths, tmp_path: Path, signal_name: str, said: str) -> None:
    starts = tmp_path / "starts"
    env = sitecustomize_env(
        paths.socket, tmp_path, END_EACH_DAEMON_AT_ITS_HANDSHAKE, TRACKD_TEST_STARTS=str(starts),
        TRACKD_TEST_PID_FILE=str(paths.pid), TRACKD_TEST_END=signal_name, TRACKD_EXIT_TIMEOUT="60",
    )
    with Child(SHORT_JOB, [], env) as job:
        assert job.wait(120) == 0, job.stderr()
    stderr = job.stderr()
    # One start's bound of daemons, each ended at its handshake; the job spools its 4 events.
    assert len(starts.read_text().split()) == MAX_ENDED_STARTS, (starts.read_text(), stderr)
    assert "4 events were not delivered: no daemon answers at" in stderr, stderr
    # Old code: "was stopped (`trackd daemon stop`, a SIGTERM) before it answered this process (3
    # starts, each stopped)", or a mix ("1 killed, 2 stopped") as the reaper won the race or not.
    assert said in stderr and "stopped" not in stderr, stderr
    assert f"(log: {paths.log})" in stderr, stderr
