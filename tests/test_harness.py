"""Short jobs under a benchmark harness: `timeout`, `xargs -P`, `make -j` start and stop them.

Each job is a real process with a real daemon; what the harness does to it is done from outside
(or, where the timing must be exact, by the job to itself, as the harness would).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import DaemonProcess, child_env, run_python, wait_for

import trackd
from trackd._paths import DaemonPaths
from trackd.client._launcher import daemon_answers
from trackd.protocol import PROTOCOL_VERSION
from trackd.store import StoreReader

# Logs point 0 and flushes, prints the run id, then on a line from stdin (the daemon is stopped by
# then) logs point 1 and is sent SIGTERM twice, as GNU `timeout` sends it: to the job, then to the
# job's process group, which holds the job. The second comes once the handler has begun.
TERMINATED_TWICE = """
import os, signal, sys, threading, time, trackd
trackd.start_run()
trackd.log_metric("x", 0.0, step=0)
trackd.flush()
print("run", trackd.active_run().info.run_id, flush=True)
sys.stdin.readline()
trackd.log_metric("x", 1.0, step=1)
ours = signal.getsignal(signal.SIGTERM)

def send_again():
    while signal.getsignal(signal.SIGTERM) is ours:
        time.sleep(0.001)
    os.kill(os.getpid(), signal.SIGTERM)
    print("sent again", flush=True)

threading.Thread(target=send_again, daemon=True).start()
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(60)
"""


@pytest.mark.timeout(60)
def test_sigterm_sent_to_the_job_and_its_process_group_still_delivers_and_ends_the_run_killed(
    daemon: DaemonProcess, store: Path
) -> None:
    # `timeout 60 python job.py` SIGTERMs the job and then its process group: the second copy,
    # arriving a few microseconds into the handler, killed the job at once about one time in
    # eight (5 of 40 jobs under `xargs -P 8`), leaving its run RUNNING and its last points unsent.
    env = child_env(daemon.paths.socket, TRACKD_TRACKING_URI=str(store), TRACKD_AUTOSTART="0")
    child = subprocess.Popen(
        [sys.executable, "-c", TERMINATED_TWICE], env=env, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        run_id = child.stdout.readline().split()[1]
        daemon.signal(signal.SIGSTOP)  # the handler's delivery waits until the repeat has come
        child.stdin.write("\n")
        child.stdin.flush()
        repeated = child.stdout.readline()  # "" when the repeat killed the job
    finally:
        daemon.signal(signal.SIGCONT)
    _, stderr = child.communicate(timeout=30)
    assert child.returncode == -signal.SIGTERM, stderr
    assert repeated == "sent again\n", f"the repeated SIGTERM killed the job at once:\n{stderr}"
    run = StoreReader(store).get_run(run_id)
    assert run.info.status == "KILLED"
    assert [point.step for point in StoreReader(store).get_metric_history(run_id, "x")] == [0, 1]


def _older_trackd(folder: Path) -> Path:
    """A copy of this trackd that speaks the previous protocol version: the daemon a suite finds
    still running after trackd was upgraded under it. Returns the folder to put on PYTHONPATH."""
    shutil.copytree(Path(trackd.__file__).parent, folder / "trackd", ignore=shutil.ignore_patterns("__pycache__"))
    limits = folder / "trackd" / "protocol" / "_limits.py"
    text = limits.read_text()
    assert f"\nPROTOCOL_VERSION = {PROTOCOL_VERSION}\n" in text
    limits.write_text(text.replace(f"\nPROTOCOL_VERSION = {PROTOCOL_VERSION}\n", f"\nPROTOCOL_VERSION = {PROTOCOL_VERSION - 1}\n"))
    return folder


def _start_older_daemon(paths: DaemonPaths, tmp_path: Path) -> subprocess.Popen[bytes]:
    """A daemon of the previous protocol version on ``paths.socket``, answering."""
    older = _older_trackd(tmp_path / "older")
    old_daemon = subprocess.Popen(
        [sys.executable, "-m", "trackd.daemon", "--socket", str(paths.socket), "--log-file", str(paths.log)],
        env=child_env(paths.socket, PYTHONPATH=str(older)), cwd=older,  # (-m puts the working folder first on sys.path)
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    # Answering, not only bound: a job that connected between the bind and the listen (a loaded
    # machine) was refused the connection, said "no daemon answers" and spooled, as it should.
    wait_for(lambda: daemon_answers(paths.socket) or old_daemon.poll() is not None, 30, message="the older daemon")
    return old_daemon


# Jobs of the suite: one asks for its experiment, one logs to the default experiment and exits.
SET_EXPERIMENT = """
import trackd
try:
    trackd.set_experiment("suite")
except trackd.DaemonUnavailable as exc:
    print(exc, flush=True)
"""
LOG_AND_EXIT = """
import trackd
trackd.start_run()
trackd.log_metric("x", 1.0)
"""


LOG_MANY_AND_EXIT = """
import trackd
trackd.start_run()
for step in range(50_000):
    trackd.log_metric("x", float(step), step=step)
"""


@pytest.mark.timeout(90)
def test_a_job_refused_by_an_older_daemon_while_it_logs_says_refused_not_that_no_daemon_answers(
    paths: DaemonPaths, store: Path, tmp_path: Path
) -> None:
    # An older daemon (left running by an upgrade) refuses a job that logs faster than its buffer
    # holds: the job said "refused this client", then "no daemon answers at ...; N events
    # spooled", of a daemon that had just answered it, and N was the first spill's count: what it
    # spooled after that was never counted.
    old_daemon = _start_older_daemon(paths, tmp_path)
    env = child_env(paths.socket, TRACKD_TRACKING_URI=str(store), TRACKD_SPOOL_DIR=str(tmp_path / "spool"))
    try:
        logged = run_python(LOG_MANY_AND_EXIT, env)
    finally:
        old_daemon.terminate()
        old_daemon.wait(30)
    # Seen failing in full-suite runs only (the first line said "no daemon answers"): the older
    # daemon's log goes with the message, to say what it saw of the job's attempts.
    seen = f"{logged.stderr}\n--- the older daemon's log:\n{paths.log.read_text() if paths.log.exists() else '(none)'}"
    assert logged.returncode == 0, seen
    spooled = [line for line in logged.stderr.splitlines() if "spooled" in line]
    assert len(spooled) == 2, seen
    assert spooled[0].startswith(f"trackd: the daemon at {paths.socket} refused this client's last attempt to connect ("), seen
    # The run's creation, 50,000 points and its end: every event the job logged, counted.
    assert "more events were spooled to " in spooled[1] and ", 50002 events in all;" in spooled[1], logged.stderr
    assert "no daemon answers" not in logged.stderr, logged.stderr


@pytest.mark.timeout(90)
def test_a_job_refused_by_an_older_daemon_says_why_and_exits_without_waiting_for_it(
    paths: DaemonPaths, store: Path, tmp_path: Path
) -> None:
    # set_experiment said "unreachable; none answered within 10 s and none could be started.
    # Start one with `trackd daemon start`" of the daemon that was running, the sender spawned a
    # daemon every second that exited "already running", and exit waited TRACKD_EXIT_TIMEOUT in
    # full before spooling: 10 s per job of the suite.
    old_daemon = _start_older_daemon(paths, tmp_path)
    env = child_env(paths.socket, TRACKD_TRACKING_URI=str(store), TRACKD_SPOOL_DIR=str(tmp_path / "spool"))
    try:
        began = time.monotonic()
        asked = run_python(SET_EXPERIMENT, {**env, "TRACKD_CONNECT_TIMEOUT": "120"})
        asked_took = time.monotonic() - began
        began = time.monotonic()
        logged = run_python(LOG_AND_EXIT, {**env, "TRACKD_CONNECT_TIMEOUT": "120", "TRACKD_EXIT_TIMEOUT": "120"})
        took = time.monotonic() - began
        log = paths.log.read_text()
        status = subprocess.run([sys.executable, "-m", "trackd.cli", "daemon", "status"], env=env, capture_output=True, text=True, timeout=30)
        stopped = subprocess.run([sys.executable, "-m", "trackd.cli", "daemon", "stop"], env=env, capture_output=True, text=True, timeout=60)
    finally:
        old_daemon.terminate()
        old_daemon.wait(30)
    assert asked.stdout.startswith(
        f"Cannot get or create experiment 'suite': the daemon at {paths.socket} refused this client's last attempt "
        f"to connect (This daemon speaks trackd protocol version"
    ) and f" {PROTOCOL_VERSION - 1}, the client speaks version {PROTOCOL_VERSION};" in asked.stdout, asked.stdout
    assert asked_took < 30, f"set_experiment waited for a daemon that refuses it ({asked_took:.0f} s)"
    assert logged.returncode == 0, logged.stderr
    assert "refused this client" in logged.stderr and "spooled to" in logged.stderr, logged.stderr
    assert took < 30, f"exit waited for a daemon that refuses it ({took:.0f} s):\n{logged.stderr}"
    assert "Not starting" not in log, log
    # status said "not running ... it is starting, stopping or hung"; stop stops it as any other.
    assert status.returncode == 1 and f"trackd daemon pid {old_daemon.pid} runs on {paths.socket} but refused" in status.stderr, status.stderr
    assert stopped.returncode == 0 and f"(pid {old_daemon.pid}) stopped" in stopped.stdout, stopped.stderr


# A container's entrypoint run without an init (`docker run image python job.py`) is PID 1 of its
# pid namespace; `docker stop` SIGTERMs it. The job sends SIGTERM to itself, as PID 1 (a signal
# from inside the namespace reaches its init only through a handler, which trackd installs).
TERMINATED_AS_PID_1 = """
import os, signal, trackd
trackd.start_run()
trackd.log_metric("x", 0.0, step=0)
trackd.flush()
print("pid", os.getpid(), "run", trackd.active_run().info.run_id, flush=True)
os.kill(os.getpid(), signal.SIGTERM)
print("still running", flush=True)
trackd.log_metric("x", 1.0, step=1)
"""


def _can_make_pid_namespaces() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "--pid", "--fork", "true"], capture_output=True, timeout=30).returncode == 0


@pytest.mark.timeout(60)
@pytest.mark.skipif(not _can_make_pid_namespaces(), reason="needs `unshare --pid` (root, or user namespaces)")
def test_sigterm_to_a_job_running_as_pid_1_ends_it_with_status_143(daemon: DaemonProcess, store: Path) -> None:
    # The kernel drops a signal with the default action that PID 1 sends itself, so the re-raised
    # SIGTERM did nothing: the job printed "still running", went on logging into the run it had
    # just ended KILLED (those points were dropped, unreported) and exited 0.
    env = child_env(daemon.paths.socket, TRACKD_TRACKING_URI=str(store), TRACKD_AUTOSTART="0")
    child = subprocess.run(
        ["unshare", "--pid", "--fork", sys.executable, "-c", TERMINATED_AS_PID_1],
        env=env, capture_output=True, text=True, timeout=30,
    )
    assert child.stdout.split()[:2] == ["pid", "1"], child.stderr
    assert "still running" not in child.stdout
    assert child.returncode == 128 + signal.SIGTERM, child.stderr
    run_id = child.stdout.split()[3]
    assert StoreReader(store).get_run(run_id).info.status == "KILLED"
    assert [point.step for point in StoreReader(store).get_metric_history(run_id, "x")] == [0]


# Starts (or resumes) the run given on the command line and sends itself the signal named there
# (SIGTERM, or SIGINT as Ctrl-C does) at the instant its creation (or its reopening as RUNNING) is
# queued, before start_run has put it on the run stack: where a signal from outside lands, now and
# then, in a job that is stopped as it starts.
TERMINATED_AS_THE_RUN_STARTS = """
import os, signal, sys, trackd
queued_by, signum = sys.argv[2], signal.Signals[sys.argv[3]]

def on_return(frame, event, arg):
    if event == "return" and frame.f_code.co_name == queued_by and frame.f_code.co_filename.endswith("_client.py"):
        sys.setprofile(None)
        os.kill(os.getpid(), signum)

sys.setprofile(on_return)
trackd.start_run(run_id=sys.argv[1])
sys.setprofile(None)
print("start_run returned", flush=True)
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("resumed", [False, True], ids=["new-run", "resumed-run"])
def test_a_signal_as_start_run_queues_the_run_ends_it_killed(
    daemon: DaemonProcess, store: Path, resumed: bool, signum: signal.Signals
) -> None:
    # The SIGTERM handler ended only the runs on the stack, and the run was not on it yet: its
    # creation (or its reopening) was delivered and the run stayed RUNNING for ever, with no will to
    # fail it. Ctrl-C did the same: the KeyboardInterrupt left start_run before the run was on the
    # stack the exit hook ends KILLED.
    run_id = "a" * 32
    env = child_env(daemon.paths.socket, TRACKD_TRACKING_URI=str(store), TRACKD_AUTOSTART="0")
    if resumed:
        with trackd.Client(store) as client:
            client.create_run("0", run_id=run_id)
            client.set_terminated(run_id, "FINISHED")
    queued_by = "set_terminated" if resumed else "create_run"
    child = subprocess.run(
        [sys.executable, "-c", TERMINATED_AS_THE_RUN_STARTS, run_id, queued_by, signum.name],
        env=env, capture_output=True, text=True, timeout=30,
    )
    assert child.returncode == -signum, child.stderr  # Python dies of an uncaught KeyboardInterrupt by SIGINT
    assert "start_run returned" not in child.stdout
    assert StoreReader(store).get_run(run_id).info.status == "KILLED"


# Ends its run, sending itself the signal named on the command line at the instant end_run has taken
# the run off the stack and is about to queue its end.
SIGNALLED_AS_THE_RUN_ENDS = """
import os, signal, sys, trackd
trackd.start_run(run_id=sys.argv[1])
signum = signal.Signals[sys.argv[2]]

def on_call(frame, event, arg):
    if event == "call" and frame.f_code.co_name == "_terminate" and frame.f_code.co_filename.endswith("_client.py"):
        sys.setprofile(None)
        os.kill(os.getpid(), signum)

sys.setprofile(on_call)
trackd.end_run()
sys.setprofile(None)
print("end_run returned", flush=True)
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_as_end_run_takes_the_run_off_the_stack_still_ends_it(
    daemon: DaemonProcess, store: Path, signum: signal.Signals
) -> None:
    # The run was off the stack the exit hooks end, and its end not queued: the process exited,
    # its client's close told the daemon it owned no run, and the run stayed RUNNING for ever.
    run_id = "b" * 32
    env = child_env(daemon.paths.socket, TRACKD_TRACKING_URI=str(store), TRACKD_AUTOSTART="0")
    child = subprocess.run(
        [sys.executable, "-c", SIGNALLED_AS_THE_RUN_ENDS, run_id, signum.name],
        env=env, capture_output=True, text=True, timeout=30,
    )
    assert child.returncode == -signum, child.stderr
    assert "end_run returned" not in child.stdout
    assert StoreReader(store).get_run(run_id).info.status == "FINISHED"  # the end end_run was making


# The program's own Ctrl-C handler, which looks at the frame the signal came in (as a debugger's or
# a "save a checkpoint where we are" handler does), and a Ctrl-C as start_run queues the run.
OWN_SIGINT_HANDLER = """
import os, signal, sys, trackd

def on_sigint(signum, frame):
    print("handler saw", frame.f_code.co_name, flush=True)

signal.signal(signal.SIGINT, on_sigint)

def on_return(frame, event, arg):
    if event == "return" and frame.f_code.co_name == "create_run" and frame.f_code.co_filename.endswith("_client.py"):
        sys.setprofile(None)
        os.kill(os.getpid(), signal.SIGINT)

sys.setprofile(on_return)
with trackd.start_run(run_id=sys.argv[1]):
    sys.setprofile(None)
    print("start_run returned", flush=True)
"""


@pytest.mark.timeout(60)
def test_a_ctrl_c_held_in_start_run_reaches_the_programs_own_handler_with_its_frame(daemon: DaemonProcess, store: Path) -> None:
    # The held SIGINT went to the program's handler with frame=None: a handler that looked at the
    # frame raised AttributeError out of start_run.
    run_id = "c" * 32
    env = child_env(daemon.paths.socket, TRACKD_TRACKING_URI=str(store), TRACKD_AUTOSTART="0")
    child = subprocess.run(
        [sys.executable, "-c", OWN_SIGINT_HANDLER, run_id], env=env, capture_output=True, text=True, timeout=30,
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.splitlines()[0].startswith("handler saw "), child.stdout
    assert "start_run returned" in child.stdout
    assert StoreReader(store).get_run(run_id).info.status == "FINISHED"
