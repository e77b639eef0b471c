"""A worker forked while two deliveries open the spool files of two live senders gets a wake pipe of
its own for each sender.

A delivery's descriptor being opened has no number a forked child can trust, so the child closes it
by the file's path, and with it every descriptor open on that file: the sender's own spool file too.
That ran first, in its own at-fork hook; then each sender closed its copies by number and made its
new wake pipe. The first sender's pipe took the lowest free numbers, those the close by path had
freed, and the second sender then closed its spool file's number again: one end of the first
sender's new pipe, whose number the second sender's pipe took then: the child's two senders shared
one pipe end (the first one's pokes woke the second, never itself). Now every copy known by its
number is closed first, then those found by path, and only then does a sender make its pipe.

The opens are made slow with strace (skipped without it), each delivery's open() returning 10 s late.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_slow_spool_disk import _env

pytestmark = pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")

# Two clients of two stores (two senders) spool while no daemon answers, their spool files on the
# lowest descriptors; a thread for each spool delivers it (as `trackd sync` in the process,
# or a background delivery, would) with its open() slowed, and the process forks while both opens
# are under way. The child says, of each sender, its wake pipe's two ends' (kind, inode), and what
# is still open on the spool files.
FORKS_WHILE_TWO_DELIVERIES_OPEN = """
import json, os, stat, subprocess, sys, threading, time
from pathlib import Path
import trackd
from trackd.client._delivery import deliver_spool

spool_dir = Path(os.environ["TRACKD_SPOOL_DIR"])
# The lowest numbers kept free while the clients make their wake pipes: the spool files take them.
placeholders = [os.open(os.devnull, os.O_RDONLY) for _ in range(8)]
clients = [trackd.Client(store) for store in sys.argv[1:3]]
for fd in placeholders:
    os.close(fd)
for client in clients:
    client.log_metric(client.create_run("0").info.run_id, "x", 1.0, step=0)
spools = [str(spool_dir / (str(client.stats()["client_id"]) + ".spool")) for client in clients]
while not all(client.stats()["spooled"] for client in clients):
    time.sleep(0.01)

def open_on(path):
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") == path:
                found.append(int(name))
        except OSError:
            pass
    return found

go = threading.Event()
threads = [
    threading.Thread(target=lambda path=path: (go.wait(), deliver_spool(Path(path), Path(os.environ["TRACKD_SOCKET"]))), daemon=True)
    for path in spools
]
for thread in threads:
    thread.start()
tracer = subprocess.Popen(
    ["strace", "-qq", *[arg for thread in threads for arg in ("-p", str(thread.native_id))],
     "-e", "trace=openat", "-e", "inject=openat:delay_exit=10000000", "-o", "/dev/null"],
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,  # not holding the test's pipes open
)
deadline = time.monotonic() + 10
while any("TracerPid:\\t0\\n" in Path(f"/proc/self/task/{thread.native_id}/status").read_text() for thread in threads):
    if time.monotonic() > deadline or tracer.poll() is not None:
        print("no-strace", flush=True)
        os._exit(0)
    time.sleep(0.05)
go.set()
while not all(len(open_on(path)) == 2 for path in spools):  # the sender's, and the delivery's being opened
    time.sleep(0.005)
child = os.fork()
if child == 0:
    def kind(fd):
        try:
            info = os.fstat(fd)
        except OSError as exc:
            return [exc.strerror, 0]
        return ["pipe" if stat.S_ISFIFO(info.st_mode) else "other", info.st_ino]
    said = {
        "wake": [[kind(client._sender._wake_r), kind(client._sender._wake_w)] for client in clients],
        "open": [open_on(path) for path in spools],
    }
    os.write(1, (json.dumps(said) + "\\n").encode())
    os._exit(0)
os.waitpid(child, 0)
tracer.terminate()
tracer.wait()
os._exit(0)
"""


def test_a_child_forked_while_two_spool_files_open_keeps_a_wake_pipe_per_sender(
    socket_path: Path, tmp_path: Path
) -> None:
    env = _env(socket_path, tmp_path / "unused", tmp_path, TRACKD_CONNECT_TIMEOUT="0.2")
    stores = [str(tmp_path / "one"), str(tmp_path / "two")]
    result = subprocess.run(
        [sys.executable, "-c", FORKS_WHILE_TWO_DELIVERIES_OPEN, *stores], env=env, capture_output=True, text=True,
        timeout=120,
    )
    if result.stdout.strip() == "no-strace":
        pytest.skip("strace cannot attach to a thread of the child here (ptrace not allowed)")
    assert result.returncode == 0 and result.stdout.strip(), result.stderr[-3000:]
    said = json.loads(result.stdout)
    ends = [end for pipe in said["wake"] for end in pipe]
    # Each sender's two ends are one pipe, and no end is another sender's. With the old code the
    # second sender closed one end of the first's pipe, which the first then shared with the second.
    assert all(kind == "pipe" for kind, _ in ends), said
    assert [read[1] == write[1] for read, write in said["wake"]] == [True, True], said
    assert said["wake"][0][0][1] != said["wake"][1][0][1], said
    # The child kept neither a spool file nor a delivery's copy of one.
    assert said["open"] == [[], []], said
