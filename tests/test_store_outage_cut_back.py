"""A store made read-only mid-run: a write the store refuses is cut back and written again exactly once.

A read-only bind mount over the store refuses every new open for writing, while the descriptors
the daemon opened before (on the mount beneath) still take appends: a write appended its metric
points through them, met the refusal at an artifact, and its cut-back opened the files again by
name, which the mount refused. The tail stayed, and every retry of the held batch appended it
again: MLflow read "points 1176 unique 400" (a step up to 6 times).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from helpers import Child, DaemonProcess, child_env, read_only, wait_for

from trackd._paths import DaemonPaths

KEYS = 20
STEPS = 30

# For each go file that appears in its control folder (go0, go1, ...; "stop" ends it), logs STEPS
# steps of KEYS metrics and a text artifact per step, flushing if the file says "flush", and
# prints "logged <steps>"; then flushes and ends the run.
LOGGER = """
import os, sys, time, trackd
run_id, control = sys.argv[1], sys.argv[2]
keys, steps, step, phase = int(sys.argv[3]), int(sys.argv[4]), 0, 0
trackd.start_run(run_id=run_id)
while not os.path.exists(os.path.join(control, "stop")):
    go = os.path.join(control, f"go{phase}")
    if not os.path.exists(go):
        time.sleep(0.01)
        continue
    for _ in range(steps):
        for key in range(keys):
            trackd.log_metric(f"k{key}", float(step), step=step)
        trackd.log_text(str(step), f"t/{step}.txt")
        step += 1
    if open(go).read() == "flush":
        trackd.flush(timeout=60)
    print("logged", step, flush=True)
    phase += 1
print("done", trackd.flush(timeout=120).pending, flush=True)
trackd.end_run()
"""


class Logger:
    """The LOGGER child, told when to log each phase."""

    def __init__(self, store: Path, socket_path: Path, control: Path) -> None:
        self.run_id = uuid.uuid4().hex
        self.control = control
        control.mkdir()
        self.phase = 0
        env = child_env(socket_path, TRACKD_TRACKING_URI=str(store), TRACKD_AUTOSTART="0")
        self.child = Child(LOGGER, [self.run_id, str(control), str(KEYS), str(STEPS)], env)

    def log(self, *, flush: bool) -> None:
        """Log one more phase of STEPS steps, and wait until the calls returned."""
        (self.control / f"go{self.phase}").write_text("flush" if flush else "")
        self.phase += 1
        steps = self.phase * STEPS
        wait_for(lambda: f"logged {steps}" in self.child.out or self.child.process.poll() is not None, 60, message=f"{steps} steps logged")

    def finish(self) -> None:
        """Flush, end the run and exit; every event delivered."""
        (self.control / "stop").write_text("")
        assert self.child.wait(180) == 0, self.child.stderr()
        assert self.child.out[-1] == "done 0", self.child.stderr()


def every_step_once(store: Path, run_id: str, steps: int) -> None:
    """MLflow reads each key's steps 0..steps-1 exactly once, every text, and the run FINISHED."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=str(store))
    for key in range(KEYS):
        history = sorted(m.step for m in client.get_metric_history(run_id, f"k{key}"))
        assert history == list(range(steps)), f"k{key}: {len(history)} points of {steps} steps, {len(set(history))} unique"
    assert len(client.list_artifacts(run_id, "t")) == steps
    assert client.get_run(run_id).info.status == "FINISHED"


@pytest.mark.parametrize("max_open_files", [None, 16], ids=["files-held", "files-closed-by-the-cap"])
def test_a_write_refused_by_a_read_only_store_is_written_once_when_it_is_writable_again(
    tmp_path: Path, paths: DaemonPaths, max_open_files: int | None
) -> None:
    # With 16 descriptors (15 files, 1 folder) for 20 files, the write closes files it appended to
    # before the refusal: their cut-back must open them again, which the read-only mount refuses,
    # so it is owed, and the batch waits until it is made.
    store = tmp_path / "mlruns"
    daemon = DaemonProcess(paths.socket, *(["--max-open-files", str(max_open_files)] if max_open_files else [])).start()
    try:
        logger = Logger(store, paths.socket, tmp_path / "control")
        logger.log(flush=True)
        with read_only(store):
            errors = daemon.status()["write_errors"]
            logger.log(flush=False)
            wait_for(lambda: daemon.status()["write_errors"] > errors + 1, 30, message="the daemon to retry the refused write")
            assert "Read-only file system" in daemon.log()
            if max_open_files:
                assert "Could not cut metric file" in daemon.log(), daemon.log()
        logger.log(flush=True)
        logger.finish()
        every_step_once(store, logger.run_id, 3 * STEPS)
    finally:
        daemon.stop()


def test_a_cut_back_owed_when_the_daemon_is_killed_is_made_by_the_next_one(tmp_path: Path, paths: DaemonPaths) -> None:
    # The cut owed is carried by the journal past another store's writes (only the last write is
    # undone at start) and past a start on a store still read-only (owed again, in the snapshot).
    store, other = tmp_path / "mlruns", tmp_path / "other"
    daemon = DaemonProcess(paths.socket, "--max-open-files", "16").start()
    logger = Logger(store, paths.socket, tmp_path / "control")
    try:
        logger.log(flush=True)
        with read_only(store):
            logger.log(flush=False)
            wait_for(lambda: "Could not cut metric file" in daemon.log(), 30, message="a cut-back refused")
            other_logger = Logger(other, paths.socket, tmp_path / "other-control")
            other_logger.log(flush=True)  # a committed write of another store, after the refused one
            daemon.kill()
            before = len(daemon.log())
            daemon = DaemonProcess(paths.socket, "--max-open-files", "16").start()
            other_logger.log(flush=True)
            other_logger.finish()
        logger.log(flush=True)
        logger.finish()
        every_step_once(store, logger.run_id, 3 * STEPS)
        every_step_once(other, other_logger.run_id, 2 * STEPS)
        # The next daemon tried the cut at its start, on the store still read-only, and kept it owed.
        assert "Could not cut metric file" in daemon.log()[before:], daemon.log()[before:]
    finally:
        daemon.stop()
