"""A process that exits while its daemon is stopped and its spool disk is slow still says that its
events were not delivered, why, and that they are spooled.

At exit the runs' end gives the daemon up and waits SPILL_TIMEOUT (1 s) for the sender thread to
spool what it holds; a spill outlasting that wait was left for the close to say. The close found it
done and said only "200 more events were spooled to ... after that line": no line said they were
not delivered, nor why, and "that line" was never said (tests/client/test_exit_lines_named.py
failed so on a loaded machine). The disk is made slow with strace (skipped without it): the
sender thread's openat, which makes the spool file, takes 1.5 s.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import DaemonProcess, child_env
from mlflow.tracking import MlflowClient
from test_slow_spool_disk_strace import START, _slowed

pytestmark = [pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace"), pytest.mark.timeout(120)]

def exit_code(slowed: str, after: str = "") -> str:
    """Code for the child: logs a point and flushes it, delays a system call of its sender thread
    (``slowed``: ``_slowed``'s code), says "ready", and once told (the daemon is stopped then) logs
    199 points more (200 events with the run's end), runs ``after`` and exits: its exit waits
    TRACKD_EXIT_TIMEOUT, then spools."""
    return "import sys\n" + START + """
trackd.log_metric("loss", 0.0, step=0)
trackd.flush()
""" + slowed + """
print(run.info.run_id, flush=True)
print("ready", flush=True)
sys.stdin.readline()
for step in range(1, 200):
    trackd.log_metric("loss", float(step), step=step)
""" + after


def exit_beside_a_stopped_daemon(daemon: DaemonProcess, store: Path, tmp_path: Path, slowed: str, after: str = "") -> str:
    """Run ``exit_code(slowed, after)``, stop the daemon once it is ready, and let it exit; then deliver its
    spool with `trackd sync` and check every point is in the store once. Returns its stderr."""
    spool_dir = tmp_path / "spool"
    env = child_env(
        daemon.paths.socket, TRACKD_TRACKING_URI=str(store), TRACKD_AUTOSTART="0", TRACKD_EXIT_TIMEOUT="2",
        TRACKD_SPOOL_DIR=str(spool_dir),
    )
    child = subprocess.Popen(
        [sys.executable, "-c", exit_code(slowed, after)], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )
    stopped = False
    try:
        assert child.stdout is not None and child.stdin is not None
        run_id = child.stdout.readline().strip()
        if run_id == "no-strace":
            pytest.skip("strace cannot attach to a thread of the child here (ptrace not allowed)")
        assert child.stdout.readline() == "ready\n", child.communicate(timeout=30)[1][-3000:]
        daemon.signal(signal.SIGSTOP)
        stopped = True
        child.stdin.write("go\n")
        child.stdin.flush()
        _, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
    finally:
        if stopped:
            daemon.signal(signal.SIGCONT)
        if child.poll() is None:
            child.kill()
            child.communicate(timeout=30)
    # What the lines say: the spool file holds them, and `trackd sync` delivers them.
    sync = subprocess.run(
        [sys.executable, "-m", "trackd", "sync", "--socket", str(daemon.paths.socket), "--spool-dir", str(spool_dir)],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert sync.returncode == 0, err + sync.stderr
    history = MlflowClient(tracking_uri=f"file:{store}").get_metric_history(run_id, "loss")
    assert sorted(m.step for m in history) == list(range(200)), err
    return err


def test_an_exit_whose_spill_outlasts_its_wait_says_the_events_were_not_delivered_and_why(
    daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    # The sender thread's openat, which makes the spool file, takes 1.5 s.
    err = exit_beside_a_stopped_daemon(daemon, store, tmp_path, _slowed("openat", "delay_exit=1500000"))
    lines = err.splitlines()
    reason = f"the daemon at {daemon.paths.socket} did not answer within 2 s"
    said = [i for i, line in enumerate(lines) if f"200 events were not delivered: {reason}; they " in line]
    # Old code: no such line, only "200 more events were spooled to ... after that line".
    assert said and any(words in lines[said[0]] for words in ("are spooled to", "still being written to the spool file")), err
    more = [i for i, line in enumerate(lines) if "more events were spooled" in line]
    assert all(i > said[0] for i in more), err  # "more", "after that line": after the line that said so
