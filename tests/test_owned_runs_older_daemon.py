"""A process with runs to tell the daemon (TRACKD_OWNED_RUNS: a worker of a trackd parent) that
meets an older daemon, which refuses it, says it was refused, not that no daemon answers.

The client sends its owned runs right after its Hello. The older daemon answers the Hello with
its refusal and closes; the runs' frame, arriving after, made the send fail, and the client took
the broken connection for a daemon that did not answer (about one job in three): its line said
"no daemon answers" of a running daemon that wanted a restart. It reads the refusal first now.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import child_env, run_python
from test_harness import LOG_MANY_AND_EXIT, _start_older_daemon

from trackd._paths import DaemonPaths

JOBS = 6  # the old code said "no daemon answers" in about one job in three


@pytest.mark.timeout(120)
def test_a_job_with_owned_runs_refused_by_an_older_daemon_says_refused(paths: DaemonPaths, store: Path, tmp_path: Path) -> None:
    old_daemon = _start_older_daemon(paths, tmp_path)
    env = child_env(
        paths.socket, TRACKD_TRACKING_URI=str(store), TRACKD_SPOOL_DIR=str(tmp_path / "spool"),
        TRACKD_OWNED_RUNS="0123456789abcdef0123456789abcdef", TRACKD_EXIT_TIMEOUT="5",
    )
    try:
        said = [run_python(LOG_MANY_AND_EXIT, env).stderr for _ in range(JOBS)]
    finally:
        old_daemon.terminate()
        old_daemon.wait(30)
    for stderr in said:
        # Its buffer fills at once: the spill's line says why, from the first attempt's end.
        first = next(line for line in stderr.splitlines() if "spooled" in line)
        assert first.startswith(f"trackd: the daemon at {paths.socket} refused this client's last attempt to connect ("), stderr
        assert "no daemon answers" not in stderr, stderr
