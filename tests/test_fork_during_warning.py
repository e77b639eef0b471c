"""A child forked while the sender thread writes a warning to stderr can still flush its stderr.

``sys.stderr`` is a ``BufferedWriter`` under its text layer (unless PYTHONUNBUFFERED is set), and
that holds a lock while it writes. The sender thread wrote its lines through it: a process that
forked while one was on its way (stderr a pipe or a terminal slow to take it) made a child whose
lock was taken for ever, so the child's next write or flush of stderr waited for ever (the flush
every multiprocessing child makes as it ends, a traceback, a warning), and its parent waited for
ever on the child. Here stderr is a pipe the test does not read until the end, filled first, so the
sender thread's line waits in the write while the program forks.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers import child_env

# No daemon answers and none is started: after TRACKD_CONNECT_TIMEOUT the sender thread spools the
# point and says so on stderr, which is full. Once that thread is inside warn(), the main thread
# forks a child that flushes stderr and exits, as a multiprocessing child ends, and waits for it at
# most 20 s.
FORK_WHILE_A_WARNING_WAITS = """
import fcntl, json, os, signal, sys, threading, time
import trackd

def fill_stderr():
    flags = fcntl.fcntl(2, fcntl.F_GETFL)
    fcntl.fcntl(2, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    try:
        while True:
            os.write(2, b"." * 4096)
    except BlockingIOError:
        pass
    finally:
        fcntl.fcntl(2, fcntl.F_SETFL, flags)

def sender_in_warn():
    for thread in threading.enumerate():
        if thread.name == "trackd-sender":
            frame = sys._current_frames().get(thread.ident)
            while frame is not None:
                if frame.f_code.co_name == "warn":
                    return True
                frame = frame.f_back
    return False

fill_stderr()
trackd.start_run()
trackd.log_metric("loss", 0.5, step=1)
deadline = time.monotonic() + 60
while not sender_in_warn():
    if time.monotonic() > deadline:
        sys.exit("the sender thread wrote no warning")
    time.sleep(0.01)
pid = os.fork()
if pid == 0:
    sys.stderr.flush()
    os._exit(0)
started, hung = time.monotonic(), False
while os.waitpid(pid, os.WNOHANG) == (0, 0):
    if time.monotonic() - started > 20:
        hung = True
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        break
    time.sleep(0.01)
print(json.dumps({"hung": hung}), flush=True)
"""


def test_a_child_forked_while_the_sender_thread_warns_can_flush_its_stderr(socket_path: Path, tmp_path: Path) -> None:
    env = child_env(
        socket_path, TRACKD_AUTOSTART="0", TRACKD_CONNECT_TIMEOUT="0.2", TRACKD_TRACKING_URI=str(tmp_path / "mlruns"),
        TRACKD_SPOOL_DIR=str(tmp_path / "spool"),
    )
    del env["PYTHONUNBUFFERED"]  # unbuffered, stderr has no BufferedWriter, nor its lock
    program = subprocess.Popen(
        [sys.executable, "-c", FORK_WHILE_A_WARNING_WAITS], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert program.stdout is not None
        result = program.stdout.readline()  # stderr stays full until the child is judged
        out, err = program.communicate(timeout=60)
    finally:
        program.kill()
        program.communicate()
    assert program.returncode == 0, err.lstrip(".")
    assert json.loads(result) == {"hung": False}, "the child waited for ever on its stderr's lock"
    assert "1 event spooled to" in err or "events spooled to" in err
