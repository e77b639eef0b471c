"""One client's artifact location that refuses writes (read-only, full) refuses that client's artifacts
alone: every other client's points are written and its flushes return, and the store is never said
to refuse writes.

The artifact location is the client's choice (``create_experiment(artifact_location=...)``). A
location on a read-only mount or a full disk other than the store's used to be taken for the
store's own disk: the daemon held and retried every batch of the store, for ever (even after that
client had exited), and told every client "The store at ... cannot be written". An innocent client
got 448 of 2,803 points written, a third clean client none.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import Child, DaemonProcess, child_env, fill, mounted_tmpfs, read_only, steps_in_store, wait_for

pytestmark = pytest.mark.timeout(120)

# Logs "x" until the stop file (argv[1]) exists, then flushes; prints its run id, count and outcome.
INNOCENT = """
import os, sys, time, trackd
run = trackd.start_run(run_name="innocent")
print("run", run.info.run_id, flush=True)
step = 0
while not os.path.exists(sys.argv[1]) or step < 500:
    trackd.log_metric("x", float(step), step=step)
    step += 1
    time.sleep(0.001)
try:
    trackd.flush(timeout=20)
    print("flushed", step, flush=True)
except trackd.TrackdError as exc:
    print("flush raised", type(exc).__name__, exc, flush=True)
    print("flushed", -1, flush=True)
trackd.end_run()
"""

# An experiment whose artifact location is argv[1]; logs a small text (inline) and the large file
# argv[2] (by path, copied by the daemon), then flushes.
GUILTY = """
import sys, trackd
experiment = trackd.create_experiment("guilty", artifact_location=sys.argv[1])
with trackd.start_run(experiment_id=experiment):
    trackd.log_metric("y", 1.0)
    trackd.log_text("hello", "a.txt")
    trackd.log_artifact(sys.argv[2])
    try:
        trackd.flush(timeout=20)
        print("flush returned", flush=True)
    except trackd.TrackdError as exc:
        print("flush raised", type(exc).__name__, exc, flush=True)
"""

LARGE = 9 * 1024 * 1024  # over the 8 MiB that travel inline: sent by path, copied by the daemon


@contextlib.contextmanager
def refusing_location(kind: str, folder: Path) -> Iterator[str]:
    """``folder`` made to refuse writes as ``kind`` says; yields the reason the daemon should give."""
    folder.mkdir()
    if kind == "read-only tmpfs":
        with mounted_tmpfs(folder, "ro,size=1m"):
            yield "Read-only file system, EROFS"
    elif kind == "full tmpfs":
        with mounted_tmpfs(folder, "size=256k"):
            fill(folder / "filler")
            yield "No space left on device, ENOSPC"
    else:
        # A read-only bind mount on the store's own filesystem: the same device number as the store.
        with read_only(folder):
            yield "Read-only file system, EROFS"


@pytest.mark.parametrize("kind", ["read-only tmpfs", "full tmpfs", "read-only bind mount beside the store"])
def test_an_artifact_location_refusing_writes_refuses_its_artifacts_alone(
    kind: str, store: Path, daemon: DaemonProcess, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o700)
    env = child_env(
        daemon.paths.socket, TRACKD_AUTOSTART="0", TRACKD_TRACKING_URI=str(store), TRACKD_SPOOL_DIR=str(spool),
        TRACKD_EXIT_TIMEOUT="2",
    )
    large = tmp_path / "model.bin"
    large.write_bytes(os.urandom(LARGE))
    stop = tmp_path / "stop"
    with refusing_location(kind, tmp_path / "other") as reason, Child(INNOCENT, [str(stop)], env) as innocent:
        wait_for(lambda: any(line.startswith("run ") for line in innocent.out), 30, message="the innocent run")
        location = tmp_path / "other" / "art"
        with Child(GUILTY, [str(location), str(large)], env) as guilty:
            assert guilty.wait(60) == 0, guilty.stderr()
        stop.touch()
        assert innocent.wait(60) == 0, innocent.stderr()
        status = daemon.status()
    # The guilty client hears why, naming the location and the error, and not the store as refusing.
    said = " ".join(guilty.out)
    assert said.startswith("flush raised DeliveryError 2 logged items, 2 events, will not be written"), said
    assert f"its artifact folder '{location}/" in said and f"refused the write ({reason}" in said, said
    assert "The store at" not in guilty.stderr() + said, guilty.stderr()
    # The innocent client's flush returned, every point written; the store never refused writes.
    assert innocent.out[-1].startswith("flushed ") and innocent.out[-1] != "flushed -1", innocent.out
    run_id, points = innocent.out[0].split()[1], int(innocent.out[-1].split()[1])
    assert steps_in_store(store, run_id) == list(range(points))
    assert innocent.err == [], innocent.err
    assert status["write_errors"] == 0 and status["backlog_records"] == 0, status
    assert status["items_rejected"] == 2 and not any("cannot be written" in error for error in status["errors"]), status


# An experiment whose artifact location is argv[1]; once the file argv[2] exists, logs a text and flushes.
WAITING = """
import os, sys, time, trackd
experiment = trackd.create_experiment("beside", artifact_location=sys.argv[1])
with trackd.start_run(experiment_id=experiment) as run:
    trackd.flush()
    print("run", run.info.run_id, flush=True)
    while not os.path.exists(sys.argv[2]):
        time.sleep(0.01)
    trackd.log_text("hello", "a.txt")
    trackd.flush(timeout=60)
    print("flushed", flush=True)
"""


def test_a_full_disk_holding_the_store_and_the_artifact_location_holds_the_artifact_until_space_returns(
    small_disk: Path, daemon: DaemonProcess, tmp_path: Path
) -> None:
    # Outside the store but on its filesystem: a full disk there is the store's own, so the artifact
    # waits with the store's other writes and is stored once space returns (not refused and lost).
    store, location, go = small_disk / "mlruns", small_disk / "art", tmp_path / "go"
    env = child_env(daemon.paths.socket, TRACKD_AUTOSTART="0", TRACKD_TRACKING_URI=str(store))
    with Child(WAITING, [str(location), str(go)], env) as child:
        wait_for(lambda: any(line.startswith("run ") for line in child.out), 30, message="the run")
        run_id = child.out[0].split()[1]
        fill(small_disk / "filler")
        go.touch()
        wait_for(lambda: daemon.status()["write_errors"], 30, message="the daemon to meet the full disk")
        assert any("cannot be written (No space left on device)" in error for error in daemon.status()["errors"])
        (small_disk / "filler").unlink()
        assert child.wait(60) == 0, child.stderr()
    assert child.out[-1] == "flushed", child.out
    assert (location / run_id / "artifacts" / "a.txt").read_text() == "hello"
