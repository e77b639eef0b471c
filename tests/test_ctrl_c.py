"""Ctrl-C (a real SIGINT) while a logging call waits for room under TRACKD_ON_FULL=block.

The daemon is SIGSTOPped, so a small buffer fills and the child's logging call waits. The call
must raise KeyboardInterrupt with its event(s) logged whole, the run must end KILLED, exit must
spool what the daemon did not take and say how many events that was, and `trackd sync` must
deliver exactly that many.
"""

from __future__ import annotations

import collections
import json
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from helpers import DaemonProcess, child_env, wait_for

from trackd.store import StoreReader

BATCH = 25  # metrics in one log_batch: more than the buffer holds (TRACKD_MAX_BUFFERED below)
MAX_BUFFERED = 10

# Delivers one point, prints the run id, waits for a line on stdin (the daemon is stopped then),
# then logs until interrupted and prints how many calls returned before the interrupted one.
CHILD = """
import json, signal, sys, trackd
# A background child may inherit SIGINT ignored: make it KeyboardInterrupt, as in a terminal.
signal.signal(signal.SIGINT, signal.default_int_handler)
how = sys.argv[1]
with trackd.start_run() as run:
    trackd.log_metric("warm", 1.0)
    trackd.flush(timeout=30)
    print(json.dumps({"run_id": run.run_id}), flush=True)
    sys.stdin.readline()
    client = trackd.Client()
    step = 0
    try:
        while True:
            if how == "log_metric":
                trackd.log_metric("k0", float(step), step=step)
            else:
                client.log_batch(run.run_id, metrics=[trackd.Metric(f"k{j}", float(step), 1, step) for j in range(%d)])
            step += 1
    except KeyboardInterrupt:
        print(json.dumps({"returned": step}), flush=True)
        raise
""" % BATCH


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["log_metric", "log_batch"])
def test_ctrl_c_while_a_call_waits_for_room_logs_its_events_whole_and_exit_spools_them(
    how: str, daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    # log_batch buffered its records one at a time, each waiting for room: a Ctrl-C in the wait
    # left the first few metrics of the batch logged and the rest not.
    spool_dir = tmp_path / "spool"
    env = child_env(
        daemon.paths.socket, TRACKD_TRACKING_URI=str(store), TRACKD_SPOOL_DIR=str(spool_dir), TRACKD_AUTOSTART="0",
        TRACKD_MAX_BUFFERED=str(MAX_BUFFERED), TRACKD_ON_FULL="block", TRACKD_EXIT_TIMEOUT="2",
    )
    err: list[str] = []
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, how], env=env, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    ) as child:
        assert child.stdin is not None and child.stdout is not None and child.stderr is not None
        reader = threading.Thread(target=err.extend, args=(child.stderr,), daemon=True)
        reader.start()
        try:
            run_id = json.loads(child.stdout.readline())["run_id"]
            daemon.signal(signal.SIGSTOP)
            child.stdin.write("go\n")
            child.stdin.flush()
            wait_for(lambda: any("logging calls are waiting for room" in line for line in err), 60, message="a call waiting for room")
            child.send_signal(signal.SIGINT)
            out = child.stdout.read()
            code = child.wait(60)
        finally:
            daemon.signal(signal.SIGCONT)
            if child.poll() is None:
                child.kill()
        reader.join(10)
    stderr = "".join(err)
    # The user got the KeyboardInterrupt from inside the waiting call, and the process died by it.
    assert code == -signal.SIGINT and "KeyboardInterrupt" in stderr, stderr
    returned = json.loads(out.strip().splitlines()[-1])["returned"]
    said = re.search(r"(\d+) events? were not delivered: .* spooled to ", stderr)
    assert said is not None, stderr
    sync = subprocess.run(
        [sys.executable, "-m", "trackd.cli", "sync", "--socket", str(daemon.paths.socket), "--spool-dir", str(spool_dir)],
        env=child_env(daemon.paths.socket), capture_output=True, text=True, timeout=60,
    )
    assert sync.returncode == 0, sync.stderr
    wait_for(lambda: daemon.status()["backlog_records"] == 0, 10, message="the daemon's backlog written")

    reader_ = StoreReader(store)
    assert reader_.get_run(run_id).info.status == "KILLED"
    keys = BATCH if how == "log_batch" else 1
    per_step = collections.Counter(m.step for j in range(keys) for m in reader_.get_metric_history(run_id, f"k{j}"))
    # Every call that returned, and the interrupted one too, whole: its events were buffered
    # before it waited for room.
    assert sorted(per_step) == list(range(returned + 1))
    assert set(per_step.values()) == {keys}, {step: n for step, n in per_step.items() if n != keys}
    # The exit's count was honest: the points, and the run's end (KILLED).
    assert int(said.group(1)) == sum(per_step.values()) + 1
