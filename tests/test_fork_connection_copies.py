"""A forked child holding a copy of its parent's connection: the daemon still sees the parent leave.

A connection ends when its last descriptor is closed. A child forked while the sender thread was
inside close() (the socket object has let go of the descriptor, the system call has not returned)
or while it was still shaking hands (no sender knew the socket yet) held a copy for its life, and
the daemon showed the parent connected after it had closed its client or died: the daemon could
not exit idle, and `trackd daemon stop` waited for it. Each test runs a real parent process that
forks a real child holding such a copy, and asks the daemon from outside.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from helpers import DaemonProcess, child_env, wait_for

# The socket descriptors this process holds (the sender's wake-up pipe is a pipe, not a socket).
SOCKETS = """
import os
def sockets():
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                found.add(int(fd))
        except FileNotFoundError:  # listdir's own descriptor, closed by now
            pass
    return found
"""

# The state a fork inside close() leaves, made on purpose: the child holds a copy of the connection
# that its at-fork hook knows nothing of (a dup of it, made before the fork). The parent closes its
# client and says so; both wait on stdin.
COPY_HELD_THROUGH_CLOSE = SOCKETS + """
import sys, trackd
before = sockets()  # before the Client: its sender connects as it is made
client = trackd.Client(sys.argv[1])
run = client.create_run(client.get_or_create_experiment("fork-copies"))
client.log_metric(run.info.run_id, "loss", 0.5, step=0)
client.flush(timeout=30)
(connection,) = sockets() - before
copy = os.dup(connection)
child = os.fork()
if child == 0:
    sys.stdin.read()
    os._exit(0)
os.close(copy)
client.set_terminated(run.info.run_id)
client.close()
print(child, flush=True)
sys.stdin.read()
os.waitpid(child, 0)
"""

# The parent forks while its sender thread waits for the daemon's Welcome (the daemon is stopped):
# the socket is in no sender yet. It says when it forked, finishes the handshake once the test
# resumes the daemon, and is then killed by the test.
FORK_DURING_HANDSHAKE = SOCKETS + """
import sys, time, trackd
before = sockets()  # before the Client: its sender connects as it is made
client = trackd.Client(sys.argv[1])
client.get_or_create_experiment("fork-copies")  # its reply needs the handshake the daemon does not answer yet
"""


def _parent_connected(daemon: DaemonProcess, pid: int) -> bool:
    return any(entry["connected"] for entry in daemon.status()["clients"] if entry["pid"] == pid)


def test_daemon_sees_parent_close_while_a_child_holds_a_copy_of_its_connection(daemon: DaemonProcess, store: Path) -> None:
    # This used to leave the parent listed as connected for as long as the child lived.
    env = child_env(daemon.paths.socket)
    parent = subprocess.Popen(
        [sys.executable, "-c", COPY_HELD_THROUGH_CLOSE, str(store)], env=env,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert parent.stdout is not None and parent.stdin is not None
        child = int(parent.stdout.readline() or 0)
        assert child > 0, parent.communicate(timeout=30)
        wait_for(lambda: not _parent_connected(daemon, parent.pid), 15, message="the daemon to see the parent leave")
        assert Path(f"/proc/{child}").exists()  # the copy is still held
    finally:
        out, err = parent.communicate("", timeout=30)
    assert parent.returncode == 0, err
    assert err == ""  # a clean close: nothing to say
    log = daemon.log()
    assert "disconnected" in log and "lost" not in log and "middle of a frame" not in log, log


def test_daemon_sees_parent_killed_after_forking_during_its_handshake(daemon: DaemonProcess, store: Path) -> None:
    # This used to leave the parent listed as connected after it was killed, while its child lived.
    env = child_env(daemon.paths.socket, TRACKD_CONNECT_TIMEOUT="60")
    script = FORK_DURING_HANDSHAKE.replace(
        'client.get_or_create_experiment("fork-copies")',
        """
import threading
answered = threading.Thread(target=client.get_or_create_experiment, args=("fork-copies",))
answered.start()
while not sockets() - before:
    time.sleep(0.01)
child = os.fork()
if child == 0:
    sys.stdin.read()
    os._exit(0)
print(child, flush=True)
answered.join()
print("connected", flush=True)
sys.stdin.read()
""",
    )
    daemon.signal(signal.SIGSTOP)
    parent = subprocess.Popen(
        [sys.executable, "-c", script, str(store)], env=env,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline() or 0)
        daemon.signal(signal.SIGCONT)
        assert child > 0, parent.communicate(timeout=30)
        assert parent.stdout.readline() == "connected\n"
        assert _parent_connected(daemon, parent.pid)
        parent.kill()
        parent.wait(10)
        wait_for(lambda: not _parent_connected(daemon, parent.pid), 15, message="the daemon to see the parent leave")
        assert Path(f"/proc/{child}").exists()
    finally:
        daemon.signal(signal.SIGCONT)
        if parent.poll() is None:
            parent.kill()
        parent.communicate(timeout=30)  # closes the child's stdin too: it exits
