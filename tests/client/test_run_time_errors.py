"""A bad start_time or end_time is named as the run's, not as a metric's timestamp.

``create_run(start_time="now")`` said "Invalid timestamp of metric 'start_time'", and
``set_terminated(run_id, end_time=1.5)`` "Invalid timestamp of metric 'end_time'": no metric was
involved. Checked at the call, before anything is sent.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import DaemonProcess, store_client

from trackd import InvalidArgument


def test_a_bad_start_or_end_time_names_the_runs_field(daemon: DaemonProcess, store: Path) -> None:
    with store_client(store, daemon.paths.socket) as client:
        with pytest.raises(InvalidArgument, match=r"^Invalid start_time of run [0-9a-f]{32}: found 'now' \(str\), expected an int\.$"):
            client.create_run("0", start_time="now")  # type: ignore[arg-type]
        run_id = client.create_run("0").info.run_id
        with pytest.raises(InvalidArgument, match=rf"^Invalid end_time of run {run_id}: found 1\.5 \(float\), expected an int\.$"):
            client.set_terminated(run_id, end_time=1.5)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgument, match=rf"^Invalid end_time of run {run_id}: found -1, expected an int from 0 to"):
            client.set_terminated(run_id, end_time=-1)
