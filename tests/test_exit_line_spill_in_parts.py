"""An exit whose spill writes part of its events within the runs' end's wait and the rest after it
counts each event once across the lines it prints.

The runs' end gives a stopped daemon up and waits SPILL_TIMEOUT (1 s) for the sender thread to
spool what it holds. A spill of several writes (the unacknowledged batches, then the buffer in
chunks of 4 MiB: here six 3 MB texts) outlasted it, and the lines said "200 events were not
delivered ...", then "204 events were not delivered ...": the 200 again, as if 404 had not been
(review of the session's diff). The disk is made slow with strace (skipped without it): each
write() of the sender thread takes 0.4 s.
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

pytestmark = [pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace"), pytest.mark.timeout(180)]

TEXTS = 6
# After the 199 points: six 3 MB texts, 206 events with the run's end.
TEXTS_CODE = f"""
for i in range({TEXTS}):
    trackd.log_text("x" * 3_000_000, f"t{{i}}.txt")
"""


def test_an_exit_whose_spill_is_written_in_parts_counts_each_event_once(daemon: DaemonProcess, store: Path, tmp_path: Path) -> None:
    err = exit_beside_a_stopped_daemon(daemon, store, tmp_path, _slowed("write", "delay_exit=400000"), TEXTS_CODE)
    counted = [int(n.replace(",", "")) for n in re.findall(r"([\d,]+) (?:more )?events? (?:were|was) (?:not delivered|spooled)", err)]
    assert len(counted) > 1, err  # the case under test: the spill was said in parts
    assert sum(counted) == 200 + TEXTS, err  # each event once (old: 200, then 204 again)
    run_id = MlflowClient(tracking_uri=f"file:{store}").search_runs(["0"])[0].info.run_id
    artifacts = MlflowClient(tracking_uri=f"file:{store}").list_artifacts(run_id)
    assert sorted(a.path for a in artifacts) == [f"t{i}.txt" for i in range(TEXTS)], err
