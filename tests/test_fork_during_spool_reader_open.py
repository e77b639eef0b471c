"""A worker forked while the sender thread opens its spool file to resend it (and reads its Hello)
keeps no copy of that descriptor.

``Spool.reader`` opened the file with no mark the at-fork hook knows (the writer's open has
``OPENING``): the descriptor was the reader's only once the replay held it, and a worker forked in
between kept it, read-only, for its whole life (the file, deleted once delivered, kept its disk
space until then). The read of the Hello is made slow with strace (skipped without it): each read(2)
of the sender thread on the spool file waits 10 s.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import DaemonProcess, wait_for
from test_slow_spool_disk import _env
from test_slow_spool_disk_strace import _slowed

pytestmark = pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")

# Spools with no daemon, has each read(2) of its sender thread on the spool file slowed, waits for
# the test's daemon to answer and the sender thread to open the file read-only, and forks: the
# worker says how many descriptors it has on the spool file.
FORKS_WHILE_THE_READER_OPENS = """
import os, subprocess, sys, threading, time, trackd
from pathlib import Path
client = trackd.Client(sys.argv[1])
run_id = client.create_run("0").info.run_id
for step in range(100):
    client.log_metric(run_id, "x", float(step), step=step)
while client.stats()["spooled"] < 100:
    time.sleep(0.01)
spool = os.path.realpath(Path(os.environ["TRACKD_SPOOL_DIR"]) / (str(client.stats()["client_id"]) + ".spool"))
SLOWED
print("slowed", flush=True)

def read_only_on_spool():
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") != spool:
                continue
            flags = next(line for line in open(f"/proc/self/fdinfo/{name}") if line.startswith("flags:"))
            if int(flags.split()[1], 8) & os.O_ACCMODE == os.O_RDONLY:
                found.append(name)
        except OSError:
            pass
    return found

while not read_only_on_spool():
    time.sleep(0.005)
worker = os.fork()
if worker == 0:
    print("worker has", len(read_only_on_spool()), flush=True)
    os._exit(0)
os.waitpid(worker, 0)
tracer.kill()
client.close()
print("closed", flush=True)
"""


@pytest.mark.timeout(120)
def test_a_worker_forked_while_the_spool_file_is_opened_for_its_resend_keeps_no_copy(
    socket_path: Path, store: Path, tmp_path: Path,
) -> None:
    env = _env(socket_path, store, tmp_path, TRACKD_CONNECT_TIMEOUT="0.2")
    code = FORKS_WHILE_THE_READER_OPENS.replace("SLOWED", _slowed("read", "delay_enter=10000000").replace('"-qq",', '"-qq", "-P", spool,'))
    child = subprocess.Popen([sys.executable, "-c", code, str(store)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = child.stdout.readline().strip() if child.stdout is not None else ""
        if first == "no-strace":
            pytest.skip("strace cannot attach to a thread of the child here (ptrace not allowed)")
        assert first == "slowed", (first, child.communicate(timeout=30))
        daemon = DaemonProcess(socket_path).start()
        try:
            out, err = child.communicate(timeout=90)
        finally:
            assert daemon.stop() == 0, daemon.log()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
    assert child.returncode == 0, err
    assert "worker has 0" in out, (out, err)
    wait_for(lambda: not list((tmp_path / "spool").glob("*.spool")), 30, message="the spool delivered")
