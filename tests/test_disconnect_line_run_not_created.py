"""The daemon's disconnect line does not promise to fail a run that never reached the store.

A client tells the daemon a run it owns before the batch that creates it (docs/protocol.md,
"Owned runs"); a process killed between the two left the daemon a will naming a run the store
does not have. The line said "marked FAILED once its process has exited" of it, and nothing was
ever failed. A raw client plays that process: its Hello, its owned run, and its end.
"""

from __future__ import annotations

from pathlib import Path

from helpers import DaemonProcess, RawClient, wait_for

from trackd.protocol import OwnedRuns, Welcome


def test_the_disconnect_line_of_a_client_whose_run_never_arrived_says_it_is_failed_only_if_it_is_in_the_store(
    daemon: DaemonProcess, store: Path
) -> None:
    raw = RawClient(daemon.paths.socket)
    try:
        assert isinstance(raw.hello(str(store), client_id="killed-before-its-run"), Welcome)
        raw.send(OwnedRuns(run_ids=("nevercreated",), spool_path=""))
    finally:
        raw.close()
    wait_for(lambda: " disconnected: " in daemon.log(), 20, message="its disconnect line")
    [line] = [line for line in daemon.log().splitlines() if " disconnected: " in line]
    assert line.endswith(
        "0 events received from it, none waiting to be written; it had not ended 1 run (nevercreated): marked FAILED "
        "once its process has exited if it is RUNNING in the store then, unless it reconnects"
    ), line
    assert not (store / "0" / "nevercreated").exists()
