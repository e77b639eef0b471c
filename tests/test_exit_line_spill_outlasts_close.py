"""A process whose exit spill is still being written when its close stops waiting counts each event
once across the lines it prints.

At exit the runs' end gives a stopped daemon up and waits SPILL_TIMEOUT (1 s) for the sender thread
to spool what it holds, and the close waits 1 s more. When the spool disk is slower than both, the
close said "200 events were not delivered: ...; they were still being written to the spool file ...
as this process exited", and once the write ended "200 more events were spooled to ... after that
line, 200 events in all": the same 200 events, counted twice, as if 400 had not been delivered.
The disk is made slow with strace (skipped without it): each write() of the sender thread takes
1.1 s, and the spool file takes two (its header, then the batches).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from helpers import DaemonProcess
from test_exit_line_slow_spill import exit_beside_a_stopped_daemon
from test_slow_spool_disk_strace import _slowed

pytestmark = [pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace"), pytest.mark.timeout(120)]


def test_an_exit_whose_spill_outlasts_the_close_counts_each_event_once(
    daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    err = exit_beside_a_stopped_daemon(daemon, store, tmp_path, _slowed("write", "delay_exit=1100000"))
    assert "still being written to the spool file" in err, err  # the case under test: the spill outlasted the close's wait
    # Every count of events not delivered or spooled, in the lines of the exit: the 200 once.
    counted = [int(n) for n in re.findall(r"(\d+) (?:more )?events? (?:were|was) (?:not delivered|spooled)", err)]
    assert sum(counted) == 200, err
