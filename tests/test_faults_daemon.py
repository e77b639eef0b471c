"""The daemon dies or restarts under load: every point arrives exactly once, in order per process."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from helpers import child_env, wait_for

from trackd._paths import DaemonPaths
from trackd.client._launcher import daemon_answers
from trackd.store import StoreReader

PRODUCERS = 4
# Each producer logs at least MIN_POINTS, then goes on until the test has restarted the daemon
# RESTARTS times (a stop file), so the restarts always land while points flow however fast the
# machine is; MAX_POINTS bounds a run whose restarts never come.
MIN_POINTS = int(os.environ.get("TRACKD_FAULT_POINTS", "50000"))
MAX_POINTS = 5_000_000
RESTARTS = 5

PRODUCER = """
import os, sys, time, trackd
rank, min_points, max_points, run_id, stop = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
trackd.start_run(run_id=run_id)
key = f"p{rank}"
step = 0
while step < max_points:
    trackd.log_metric(key, float(step), step=step)
    step += 1
    if step % 5000 == 0:
        if step >= min_points and os.path.exists(stop):
            break
        time.sleep(0.05)  # spread the stream over the restarts
trackd.flush(timeout=120)
print("done", step, flush=True)
"""


def _daemon_pid(paths: DaemonPaths) -> int | None:
    try:
        return int(paths.pid.read_text())
    except (OSError, ValueError):
        return None


@pytest.mark.timeout(300)
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_every_point_arrives_once_while_the_daemon_is_restarted(signum: int, socket_path: Path, store: Path) -> None:
    paths = DaemonPaths(socket_path)
    run_id = uuid.uuid4().hex
    env = child_env(socket_path, TRACKD_TRACKING_URI=str(store))
    stop = store.parent / "stop-producers"
    producers = [
        subprocess.Popen(
            [sys.executable, "-c", PRODUCER, str(rank), str(MIN_POINTS), str(MAX_POINTS), run_id, str(stop)],
            env={**env, "RANK": str(rank)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for rank in range(PRODUCERS)
    ]
    rng = random.Random(7)
    killed: list[int] = []
    try:
        wait_for(lambda: _daemon_pid(paths) is not None and daemon_answers(paths.socket, 0.2), 30, message="first daemon")
        for _ in range(RESTARTS):
            time.sleep(rng.uniform(0.2, 0.8))
            pid = _daemon_pid(paths)
            if pid is None or all(p.poll() is not None for p in producers):
                break
            os.kill(pid, signum)
            killed.append(pid)
            # The clients start a successor themselves, unless the daemon's graceful stop answered
            # their last flush and they all finished (this used to wait for a daemon nobody needed).
            wait_for(
                lambda: all(p.poll() is not None for p in producers)
                or (_daemon_pid(paths) not in (None, pid) and daemon_answers(paths.socket, 0.2)),
                60, message="a new daemon started by the clients",
            )
        stop.touch()
        outputs = [p.communicate(timeout=240) for p in producers]
    finally:
        for p in producers:
            if p.poll() is None:
                p.kill()
                p.communicate()
            # Pipes of a producer that exited on its own must be closed too, or a later test's
            # garbage collection reports them (ResourceWarning, an error under filterwarnings).
            for stream in (p.stdout, p.stderr):
                if stream is not None:
                    stream.close()
        final = _daemon_pid(paths)
        if final is not None:
            try:
                os.kill(final, signal.SIGTERM)
            except ProcessLookupError:
                # The daemon SIGKILLed last, after which every producer finished: no successor was
                # started, and the dead one's pid file stays behind (this waited for it in vain).
                final = None
        if final is not None:
            wait_for(lambda: not paths.pid.exists() or _daemon_pid(paths) != final, 30, message="daemon exit")
    assert len(killed) == RESTARTS, f"the producers finished after {len(killed)} restarts of {RESTARTS}"
    logged = []
    for process, (out, err) in zip(producers, outputs):
        assert process.returncode == 0 and out.startswith("done "), err
        logged.append(int(out.split()[1]))
    reader = StoreReader(store)
    for rank, points in enumerate(logged):
        assert points >= MIN_POINTS
        values = [m.value for m in reader.get_metric_history(run_id, f"p{rank}")]
        assert len(values) == points, f"rank {rank}: {len(values)} points, expected {points}"
        assert values == [float(step) for step in range(points)], f"rank {rank}: points duplicated or out of order"
