"""A metric file the daemon may not look at, open or write costs its own points only.

One run's metrics/ folder made unsearchable (chmod 000: a user's mistake, a store shared with a
group) used to fail the daemon's whole write: the file's size, looked up before the write, raised
"Permission denied", and every client's points in that write were refused with it, in the guilty
run's words ("The store at ... could not be written: [Errno 13] Permission denied: .../metrics/loss").
Now that file's points alone are refused, in a message naming its run and key, and the rest of the
write goes to disk.

Root is not refused by permissions, so a daemon started by root runs without the capabilities that
override them (setpriv), as uid 0 still, which its clients' uid must be. A metric file whose path is
longer than the system takes (PATH_MAX) failed the write the same way, for root too.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import DaemonProcess, RawClient, create_run_record, metric_records, replies_to_batch, steps_in_store

from trackd.protocol import Batch, Rejected, Welcome

pytestmark = pytest.mark.timeout(60)

# Root without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH: file modes apply to it as to its owner.
WITHOUT_PERMISSION_OVERRIDE = (
    "setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--inh-caps", "-dac_override,-dac_read_search",
)


@pytest.fixture
def bound_daemon(socket_path: Path) -> Iterator[DaemonProcess]:
    """A real daemon that file permissions refuse, as they do any user's."""
    wrapper: tuple[str, ...] = ()
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("needs setpriv to run the daemon as root without overriding file permissions")
        wrapper = WITHOUT_PERMISSION_OVERRIDE
    proc = DaemonProcess(socket_path, wrapper=wrapper).start()
    yield proc
    assert proc.stop() == 0, proc.log()


def _no_search(run: Path) -> str:
    (run / "metrics").chmod(0)
    return "loss"


def _key_folder_no_search(run: Path) -> str:
    (run / "metrics" / "group").mkdir()
    (run / "metrics" / "group").chmod(0)
    return "group/loss"


def _no_write(run: Path) -> str:
    (run / "metrics").chmod(0o500)  # searchable: the new file's link into it is refused
    return "loss"


def _read_only_file(run: Path) -> str:
    (run / "metrics" / "loss").write_text("1700000000000 1.0 0\n")
    (run / "metrics" / "loss").chmod(0o444)
    return "loss"


DAMAGES: dict[str, Callable[[Path], str]] = {
    "metrics folder not searchable": _no_search,
    "key folder not searchable": _key_folder_no_search,
    "metrics folder not writable": _no_write,
    "metric file read-only": _read_only_file,
}


def _connected(daemon: DaemonProcess, store: Path, run_id: str) -> RawClient:
    """A raw client of ``store`` whose batch 1 made ``run_id``."""
    raw = RawClient(daemon.paths.socket)
    assert isinstance(raw.hello(str(store), client_id=uuid.uuid4().hex), Welcome)
    raw.send(Batch(seq=1, records=[create_run_record(run_id)]))
    assert raw.replies_until_ack(1) == []
    return raw


@pytest.mark.parametrize("damage", DAMAGES.values(), ids=DAMAGES.keys())
def test_a_metric_file_the_daemon_may_not_use_refuses_its_points_alone(
    bound_daemon: DaemonProcess, store: Path, damage: Callable[[Path], str]
) -> None:
    daemon = bound_daemon
    guilty_id, innocent_id = uuid.uuid4().hex, uuid.uuid4().hex
    guilty, innocent = _connected(daemon, store, guilty_id), _connected(daemon, store, innocent_id)
    run = store / "0" / guilty_id
    try:
        key = damage(run)
        # Both batches wait for the daemon, which takes them in one write.
        daemon.signal(signal.SIGSTOP)
        try:
            guilty.send(Batch(seq=2, records=metric_records(guilty_id, key, 5)))
            innocent.send(Batch(seq=2, records=metric_records(innocent_id, "x", 200)))
        finally:
            daemon.signal(signal.SIGCONT)
        guilty_replies, innocent_replies = guilty.replies_until_ack(2), innocent.replies_until_ack(2)
    finally:
        for folder in (run / "metrics", run / "metrics" / "group"):
            if folder.is_dir():
                folder.chmod(0o755)
        guilty.close()
        innocent.close()
    # This used to be refused too, every point, in the guilty run's words.
    assert innocent_replies == []
    assert steps_in_store(store, innocent_id) == list(range(200))
    (refused,) = guilty_replies
    assert isinstance(refused, Rejected) and refused.events == 5, refused
    assert refused.message.startswith(f"Cannot write metric {key!r} of run {guilty_id}: Permission denied"), refused
    assert "could not be written" not in daemon.log()  # the whole-store failure's words


@pytest.fixture
def deep_store() -> Iterator[Path]:
    """A store whose path has 1,015 characters (a client may name one of 1,024), 3,943 bytes in UTF-8."""
    top = Path(tempfile.mkdtemp(prefix="td-", dir="/tmp"))
    store = top.joinpath(*["\N{GRINNING FACE}" * 61] * 16, "mlruns")
    assert len(str(store)) <= 1024
    store.mkdir(parents=True)
    yield store
    shutil.rmtree(top)


def test_a_metric_file_whose_path_is_too_long_refuses_its_points_alone(daemon: DaemonProcess, deep_store: Path) -> None:
    guilty_id, innocent_id = uuid.uuid4().hex, uuid.uuid4().hex
    key = "/".join(["k" * 82] * 3)  # 248 characters, within MLflow's 250: its file's path is over 4,096 bytes
    assert len(os.fsencode(deep_store / "0" / guilty_id / "metrics" / key)) > 4096
    assert replies_to_batch(daemon.paths.socket, deep_store, [create_run_record(guilty_id), create_run_record(innocent_id)]) == []
    records = [*metric_records(innocent_id, "x", 200), *metric_records(guilty_id, key, 5)]
    # This used to refuse the whole write, the innocent run's points too: "File name too long".
    (refused,) = replies_to_batch(daemon.paths.socket, deep_store, records)
    assert isinstance(refused, Rejected) and refused.events == 5, refused
    assert refused.message.startswith(f"Cannot write metric {key!r} of run {guilty_id}: File name too long"), refused
    assert steps_in_store(deep_store, innocent_id) == list(range(200))
