"""`trackd daemon stop` signals the daemon it proved, never a process given that daemon's pid since.

Stop proves which process is the daemon (the kernel names the socket's listener), then asks it how
many clients are connected (a status request that waits up to 2 s), then sends SIGTERM. A daemon
that exited in between, its pid given to another process, had that process signalled: stop now
holds the daemon by a pidfd from before its proof is made again, and signals through it.

The race is made for real in a pid namespace of its own (``unshare``), where the test may choose
the next pid (``/proc/sys/kernel/ns_last_pid``): a stand-in for the daemon listens on the socket
and, at stop's status request, exits; a ``sleep`` is then started with its pid before the request
fails. The stand-in is a plain listener, not trackd's daemon: only what stop asks of the kernel
(the listener's pid and uid) and its status request (which finds no answer) matter here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import inherited_env, short_socket_path

pytestmark = pytest.mark.timeout(60)

NAMESPACE = ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--mount-proc"]

# argv: socket path, a socket pair's fd. Listens there; a connection that closes without a byte is
# a probe (stop asks the kernel who listens); the first that sends bytes (stop's status request)
# goes to the supervisor through the socket pair, and the stand-in exits.
STAND_IN = """
import os, socket, sys
pair = socket.socket(fileno=int(sys.argv[2]))
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(sys.argv[1])
server.listen(8)
pair.sendall(b"L")
while True:
    conn, _ = server.accept()
    if conn.recv(1):
        socket.send_fds(pair, [b"Q"], [conn.fileno()])
        os._exit(0)
    conn.close()
"""

# argv: socket path. Process 1 of the namespace: runs the stand-in and `trackd daemon stop`, and
# when the stand-in has exited starts a `sleep` with its pid, then lets stop's request fail.
SUPERVISOR = """
import json, os, socket, subprocess, sys
ours, theirs = socket.socketpair()
stand_in = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2], str(theirs.fileno())], pass_fds=[theirs.fileno()])
theirs.close()
assert ours.recv(1) == b"L"
stop = subprocess.Popen(
    [sys.executable, "-m", "trackd.cli", "daemon", "stop", "--socket", sys.argv[2], "--timeout", "10"],
    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
)
_, fds, _, _ = socket.recv_fds(ours, 1, 1)
stand_in.wait()
with open("/proc/sys/kernel/ns_last_pid", "w") as next_pid:
    next_pid.write(str(stand_in.pid - 1))
stranger = subprocess.Popen(["sleep", "30"])
os.close(fds[0])  # stop's status request fails now, with the stranger holding the pid
out, err = stop.communicate(timeout=30)
signalled = stranger.poll()
stranger.kill()
stranger.wait()
print(json.dumps({
    "pid": stand_in.pid, "stranger": stranger.pid, "stranger_exit": signalled,
    "code": stop.returncode, "out": out, "err": err,
}))
"""


def _namespaces_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    try:
        probe = subprocess.run([*NAMESPACE, "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


@pytest.mark.skipif(not _namespaces_work(), reason="needs `unshare` with unprivileged user and pid namespaces")
def test_stop_never_signals_a_process_given_the_pid_of_a_daemon_that_exited_after_its_proof() -> None:
    socket_path = short_socket_path()
    try:
        result = subprocess.run(
            [*NAMESPACE, sys.executable, "-c", SUPERVISOR, STAND_IN, str(socket_path)],
            env=inherited_env(), capture_output=True, text=True, timeout=50,
        )
    finally:
        shutil.rmtree(socket_path.parent, ignore_errors=True)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.splitlines()[-1])
    assert seen["stranger"] == seen["pid"], f"the pid was not given again, nothing was tested: {seen}"
    # This used to be -15: stop's SIGTERM killed the sleep that had the stand-in's pid.
    assert seen["stranger_exit"] is None, seen
    assert "Traceback" not in seen["err"], seen
    assert seen["code"] == 0, seen
    assert f"trackd daemon (pid {seen['pid']}) stopped" in seen["out"], seen
