"""A process that gave its stopped daemon up in the middle of a job, while its spool disk was slow,
counts each event once across that line and the lines of its exit.

A run's end in the middle of a job (end_run) gives a stopped daemon up after TRACKD_EXIT_TIMEOUT
and waits SPILL_TIMEOUT (1 s) for the sender thread to spool what it holds. When the disk is slower,
its line says "200 events were not delivered: ...; they were still being written to the spool file
... when this flush stopped waiting". The exit that followed counted from where the spool file
stood, before that write ended, and said the same 200 again: "200 events were not delivered: ...;
they are spooled to ..." once it ended, or "... still being written ... as this process exited"
while it went on (502 counted for 302 events). A second run's end in the middle of the job, while
that write went on, said the 200 once more, and the 102 events logged since "held in memory, lost if
this process exits" (or, at the close, "lost"), of events spooled next and counted again at exit.
The disk is made slow with strace (skipped without it): each write() of the sender thread takes
1.1 s or 2.5 s (the spool file takes two).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from helpers import DaemonProcess
from mlflow.tracking import MlflowClient
from test_exit_line_slow_spill import exit_beside_a_stopped_daemon
from test_slow_spool_disk_strace import _slowed

pytestmark = [pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace"), pytest.mark.timeout(120)]

# After the 199 points: the run's end gives the daemon up (200 events), then a second run, its 100
# points and its end at exit (102 events).
MID_JOB = """
trackd.end_run()
trackd.start_run()
for step in range(100):
    trackd.log_metric("loss2", float(step), step=step)
"""

# Then that run's end gives it up again (102 events), and a third run logs 50 points (52 events).
TWICE = MID_JOB + """
trackd.end_run()
trackd.start_run()
for step in range(50):
    trackd.log_metric("loss3", float(step), step=step)
"""


def counted(err: str) -> int:
    """Every count of events not delivered, spooled or lost, in the lines of ``err``."""
    return sum(
        int(n.replace(",", ""))
        for n in re.findall(r"([\d,]+) (?:more )?events? (?:were not delivered|was not delivered|were spooled|are lost|is lost)", err)
    )


@pytest.mark.parametrize("delay", [1_100_000, 2_500_000])
def test_a_give_up_in_the_middle_of_a_job_on_a_slow_spool_disk_is_not_counted_again_at_exit(
    daemon: DaemonProcess, store: Path, tmp_path: Path, delay: int
) -> None:
    err = exit_beside_a_stopped_daemon(daemon, store, tmp_path, _slowed("write", f"delay_exit={delay}"), MID_JOB)
    # The case under test: the mid-job line said its events were still being written.
    assert "still being written to the spool file" in err and "when this flush stopped waiting" in err, err
    assert counted(err) == 302, err  # each event once (old: the mid-job 200 said again at exit)
    if "lost" not in err:
        # None lost: the second run's points are in the store too, delivered by `trackd sync`.
        runs = MlflowClient(tracking_uri=f"file:{store}").search_runs(["0"])
        second = next(run for run in runs if "loss2" in run.data.metrics)
        history = MlflowClient(tracking_uri=f"file:{store}").get_metric_history(second.info.run_id, "loss2")
        assert sorted(m.step for m in history) == list(range(100)), err


@pytest.mark.parametrize("delay", [1_100_000, 2_500_000])
def test_two_give_ups_in_the_middle_of_a_job_on_a_slow_spool_disk_count_each_event_once(
    daemon: DaemonProcess, store: Path, tmp_path: Path, delay: int
) -> None:
    err = exit_beside_a_stopped_daemon(daemon, store, tmp_path, _slowed("write", f"delay_exit={delay}"), TWICE)
    assert "when this flush stopped waiting" in err, err
    # Each event once (old: 200 + 200 + 102 "held" + 154 spooled, or more).
    assert counted(err) == 354, err
