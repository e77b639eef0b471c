"""Artifacts sent by path are copied beside the daemon's store writes, not inside them.

A copy is made slow the way a stalled mount makes it slow: the source has a write lease
(fcntl F_SETLEASE), so the daemon's open() of it waits until the test lets go of the lease (or
the kernel's lease-break-time, 45 s by default, runs out). No part of trackd is replaced.
"""

from __future__ import annotations

import fcntl
import os
import signal
import sys
import time
import uuid
from pathlib import Path
from types import TracebackType

import pytest
from helpers import DaemonProcess, RawClient, create_run_record, metric_lines, wait_for

import trackd
from trackd import Client, DeliveryError
from trackd._paths import UNWRITTEN_EXIT_CODE, read_exit_report
from trackd.client import ClientConfig
from trackd.client._control import query_status
from trackd.daemon._config import DEFAULT_SHUTDOWN_TIMEOUT
from trackd.protocol import Ack, Batch, ErrorReply, Event, Flush, FlushDone, RecordKind, Rejected, Welcome
from trackd.store import StoreReader

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="file leases (F_SETLEASE) are Linux's"),
]

FINISHED = 3


class WriteLease:
    """A write lease on a file: another process's open() of it waits until ``release()``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = -1

    def __enter__(self) -> WriteLease:
        # The kernel tells the holder with SIGIO when an open() starts waiting; its default action kills.
        self._previous = signal.signal(signal.SIGIO, signal.SIG_IGN)
        self._fd = os.open(self.path, os.O_RDONLY)
        fcntl.fcntl(self._fd, fcntl.F_SETLEASE, fcntl.F_WRLCK)
        return self

    def opening(self) -> bool:
        """Whether another process waits in open() of the file (the kernel is breaking the lease)."""
        return fcntl.fcntl(self._fd, fcntl.F_GETLEASE) != fcntl.F_WRLCK

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        self.release()
        signal.signal(signal.SIGIO, self._previous)


def artifact_record(run_id: str, source: Path) -> tuple[object, ...]:
    return (RecordKind.ARTIFACT.value, run_id, "model.pt", None, str(source))


def events_until_flush_done(client: RawClient) -> list[Event]:
    events = [client.next_event()]
    while not isinstance(events[-1], FlushDone):
        events.append(client.next_event())
    return events


def test_a_neighbours_flush_returns_while_an_artifact_is_still_being_copied(daemon: DaemonProcess, store: Path, tmp_path: Path) -> None:
    # This used to wait for the copy: the daemon copied an artifact sent by path inside its one
    # store write, so a 2 GB checkpoint held every other client's points and flushes for seconds.
    source = tmp_path / "checkpoint.bin"
    content = os.urandom(256 * 1024)
    source.write_bytes(content)
    run_id = uuid.uuid4().hex
    owner = RawClient(daemon.paths.socket)
    try:
        with WriteLease(source) as lease:
            assert isinstance(owner.hello(str(store), client_id="owner"), Welcome)
            owner.send(Batch(seq=1, records=[create_run_record(run_id)]))
            assert owner.next_event() == Ack(seq=1)
            owner.send(Batch(seq=2, records=[artifact_record(run_id, source)]))
            owner.send(Batch(seq=3, records=[(RecordKind.SET_TERMINATED.value, run_id, FINISHED, 1_700_000_000_001, False)]))
            owner.send(Flush(request_id=1))
            wait_for(lease.opening, message="the daemon to open the artifact's source")
            with trackd.Client(str(store), config=ClientConfig(socket_path=daemon.paths.socket, autostart=False)) as neighbour:
                other_run = neighbour.create_run("0").info.run_id
                neighbour.log_metric(other_run, "loss", 0.5, timestamp=1_700_000_000_000, step=1)
                neighbour.flush(timeout=10)
            assert metric_lines(store, other_run, "loss") == ["1700000000000 0.5 1"]
            # The copy is still under way: the owner's artifact and its later end_run wait for it.
            assert lease.opening()
            assert daemon.status()["copies_in_progress"] == 1
            artifacts = Path(StoreReader(store).get_run(run_id).info.artifact_uri.removeprefix("file://"))
            assert not (artifacts / "model.pt").exists()
            assert StoreReader(store).get_run(run_id).info.status == "RUNNING"
        events = events_until_flush_done(owner)
    finally:
        owner.close()
    assert events[-1] == FlushDone(request_id=1, acked_seq=3), events
    assert (artifacts / "model.pt").read_bytes() == content
    assert StoreReader(store).get_run(run_id).info.status == "FINISHED"
    assert not [p for p in store.iterdir() if p.name.startswith(".trackd-")], "a staged copy was left at the store's root"


def test_sigterm_during_a_copy_stops_in_bounded_time_and_the_artifact_is_written_by_the_next_daemon(
    socket_path: Path, store: Path, tmp_path: Path
) -> None:
    # A copy the daemon cannot finish before its shutdown deadline is left unwritten and never
    # acknowledged, as a write is: its client sends it again to the next daemon.
    source = tmp_path / "checkpoint.bin"
    content = os.urandom(256 * 1024)
    source.write_bytes(content)
    run_id = uuid.uuid4().hex
    batch = Batch(seq=1, records=[create_run_record(run_id), artifact_record(run_id, source)])
    first = DaemonProcess(socket_path).start()
    with WriteLease(source) as lease:
        owner = RawClient(socket_path)
        try:
            assert isinstance(owner.hello(str(store), client_id="owner"), Welcome)
            owner.send(batch)
            wait_for(lease.opening, message="the daemon to open the artifact's source")
            # SIGTERM; its shutdown waits DEFAULT_SHUTDOWN_TIMEOUT for the copy, then exits.
            assert first.stop(timeout=DEFAULT_SHUTDOWN_TIMEOUT + 5) == UNWRITTEN_EXIT_CODE, first.log()
            events = owner.events_until_closed()
        finally:
            owner.close()
        assert [type(event) for event in events] == [ErrorReply], events  # shutting_down; no Ack
        assert read_exit_report(first.paths, first.pid) == 2
        lease.release()
        second = DaemonProcess(socket_path).start()
    owner = RawClient(socket_path)
    try:
        welcome = owner.hello(str(store), client_id="owner")
        assert isinstance(welcome, Welcome) and welcome.resume_seq == 0
        owner.send(batch)
        assert owner.next_event() == Ack(seq=1)
    finally:
        owner.close()
        assert second.stop() == 0, second.log()
    artifacts = Path(StoreReader(store).get_run(run_id).info.artifact_uri.removeprefix("file://"))
    assert (artifacts / "model.pt").read_bytes() == content


def copied_batch(seq: int, run_id: str, source: Path, step: int) -> Batch:
    """A batch logging ``source`` as artifact ``<step>.bin``, a point of "loss" at ``step`` and tag "last" = ``step``."""
    return Batch(seq=seq, records=[
        (RecordKind.ARTIFACT.value, run_id, f"{step}.bin", None, str(source)),
        (RecordKind.METRIC.value, run_id, "loss", float(step), 1_700_000_000_000 + step, step),
        (RecordKind.TAG.value, run_id, "last", str(step)),
    ])


def steps_and_last_tag(store: Path, run_id: str) -> tuple[list[str], str]:
    steps = [line.split()[2] for line in metric_lines(store, run_id, "loss")]
    return steps, StoreReader(store).get_run(run_id).data.tags["last"]


def test_a_batch_whose_copy_is_done_is_written_while_its_clients_next_copy_is_still_under_way(
    socket_path: Path, store: Path, tmp_path: Path
) -> None:
    # This used to wait for the later copy, then be written after the later batch: released, the
    # batch came back through the next write's take while its client still waited for the other
    # copy, and Copies.hold queued it behind that one (the run's last tag ended as "2", not "3").
    fast, slow = tmp_path / "fast.bin", tmp_path / "slow.bin"
    fast.write_bytes(b"f" * 1024)
    slow.write_bytes(b"s" * 1024)
    run_id = uuid.uuid4().hex
    daemon = DaemonProcess(socket_path).start()
    owner = RawClient(socket_path, timeout=5)
    try:
        with WriteLease(slow) as lease:
            assert isinstance(owner.hello(str(store), client_id="owner"), Welcome)
            owner.send(Batch(seq=1, records=[create_run_record(run_id)]))
            assert owner.next_event() == Ack(seq=1)
            # One write takes both: the second batch's copy starts beside the first's.
            owner.send_bytes(owner.protocol.send(copied_batch(2, run_id, fast, 2)) + owner.protocol.send(copied_batch(3, run_id, slow, 3)))
            wait_for(lease.opening, message="the daemon to open the slow source")
            assert owner.next_event() == Ack(seq=2)
            assert steps_and_last_tag(store, run_id) == (["2"], "2")
        assert owner.next_event() == Ack(seq=3)
    finally:
        owner.close()
        assert daemon.stop() == 0, daemon.log()
    assert steps_and_last_tag(store, run_id) == (["2", "3"], "3")


def test_copies_finishing_together_keep_their_clients_batches_in_order(socket_path: Path, store: Path, tmp_path: Path) -> None:
    # This used to write the later batch first: each copy done put its batches in front of the
    # batcher, so the second copy's batch went in front of the first's, which still waited there
    # for the write (max_age): the points were stored out of order and the tag kept the older value.
    first, second = tmp_path / "first.bin", tmp_path / "second.bin"
    first.write_bytes(b"1" * 1024)
    second.write_bytes(b"2" * 1024)
    run_id = uuid.uuid4().hex
    # Both copies finish within max_age of each other, before the write that takes their batches.
    daemon = DaemonProcess(socket_path, "--max-age", "2").start()
    owner = RawClient(socket_path)
    try:
        with WriteLease(first) as first_lease, WriteLease(second) as second_lease:
            assert isinstance(owner.hello(str(store), client_id="owner"), Welcome)
            owner.send(Batch(seq=1, records=[create_run_record(run_id)]))
            owner.send(Flush(request_id=1))
            assert events_until_flush_done(owner)[-1] == FlushDone(request_id=1, acked_seq=1)
            owner.send_bytes(owner.protocol.send(copied_batch(2, run_id, first, 2)) + owner.protocol.send(copied_batch(3, run_id, second, 3)))
            wait_for(lambda: first_lease.opening() and second_lease.opening(), message="the daemon to open both sources")
            first_lease.release()
            wait_for(lambda: daemon.status()["copies_in_progress"] == 1, message="the first copy to finish")
            second_lease.release()
            wait_for(lambda: daemon.status()["copies_in_progress"] == 0, message="the second copy to finish")
        owner.send(Flush(request_id=2))
        assert events_until_flush_done(owner)[-1] == FlushDone(request_id=2, acked_seq=3)
    finally:
        owner.close()
        assert daemon.stop() == 0, daemon.log()
    assert steps_and_last_tag(store, run_id) == (["2", "3"], "3")


# A daemon whose hour (STALE_STAGING_AGE) is a second and whose idle sweep forgets a store's writer
# after one unused second (IDLE_FILE_SECONDS, IDLE_STORE_SWEEPS): the constants, not the code, changed.
SCALED_DAEMON = """
from trackd.store import _staging
_staging.STALE_STAGING_AGE = 1.0
from trackd.daemon import _applier, _server
_applier.IDLE_STORE_SWEEPS = 0
_server.IDLE_FILE_SECONDS = 1.0
"""


def test_a_copy_waiting_for_its_batchs_other_copy_is_not_removed_by_a_writer_made_meanwhile(
    socket_path: Path, store: Path, tmp_path: Path
) -> None:
    # This used to fail the artifact ("No such file or directory" for the staged copy): a batch
    # sending two files by path waits for both copies, and the first one's staging folder waited
    # untouched while the other copy went on. A writer made meanwhile (the store's writer made again
    # after the idle sweep forgot it, 5-10 min; or the daemon's first for that store) removed every
    # staging folder older than an hour as left by a crash, this one included. Also a single copy
    # taking over an hour (a large checkpoint, a slow disk) lost its own folder so.
    first, second = tmp_path / "first.bin", tmp_path / "second.bin"
    first.write_bytes(b"1" * 1024)
    second.write_bytes(b"2" * 1024)
    run_id = uuid.uuid4().hex
    daemon = DaemonProcess(socket_path, preamble=SCALED_DAEMON).start()
    owner = RawClient(socket_path, timeout=15)
    try:
        with WriteLease(second) as lease:
            assert isinstance(owner.hello(str(store), client_id="owner"), Welcome)
            owner.send(Batch(seq=1, records=[create_run_record(run_id)]))
            assert owner.next_event() == Ack(seq=1)
            owner.send(Batch(seq=2, records=[
                (RecordKind.ARTIFACT.value, run_id, "first.bin", None, str(first)),
                (RecordKind.ARTIFACT.value, run_id, "second.bin", None, str(second)),
            ]))
            wait_for(lease.opening, message="the daemon to open the second source")
            wait_for(lambda: query_status(socket_path)["copies_in_progress"] == 1, message="the first copy to finish")
            time.sleep(3)  # the first copy's folder over the (scaled) hour old, the store's writer forgotten
        assert owner.next_event() == Ack(seq=2)  # no Rejected before it
    finally:
        owner.close()
        assert daemon.stop() == 0
    artifacts = Path(StoreReader(store).get_run(run_id).info.artifact_uri.removeprefix("file://"))
    assert (artifacts / "first.bin").read_bytes() == b"1" * 1024
    assert (artifacts / "second.bin").read_bytes() == b"2" * 1024


@pytest.mark.parametrize("change", ["rewritten in place", "made anew"])
def test_a_large_artifact_changed_after_log_artifact_is_refused_not_stored_with_the_later_content(
    daemon: DaemonProcess, store: Path, tmp_path: Path, change: str
) -> None:
    # A checkpoint over 8 MiB is copied by the daemon after the call returns. Lightning's
    # last.ckpt, saved again at the next epoch, was then stored under the earlier name with the
    # later content, and flush() said nothing (thread-heavy user review: three 9 MiB checkpoints,
    # all three stored as the last one).
    source = tmp_path / "last.ckpt"
    source.write_bytes(b"epoch-1 " * (9 * 1024 * 1024 // 8))
    # By the file's own path (TRACKD_ARTIFACT_SNAPSHOT=0): a copy made at the call has a stamp of its own.
    client = Client(store, config=ClientConfig(socket_path=daemon.paths.socket, autostart=False, artifact_snapshot=False))
    try:
        run_id = client.create_run().info.run_id
        client.flush()
        daemon.signal(signal.SIGSTOP)  # the copy cannot start before the file changes
        try:
            client.log_artifact(run_id, str(source), "checkpoints")
            time.sleep(0.01)  # a later mtime, even on a coarse clock
            if change == "made anew":
                source.unlink()
            with open(source, "r+b" if change == "rewritten in place" else "wb") as rewrite:
                rewrite.write(b"epoch-2 " * (9 * 1024 * 1024 // 8))
        finally:
            daemon.signal(signal.SIGCONT)
        with pytest.raises(DeliveryError) as caught:
            client.flush()
        (failure,) = caught.value.failures
        assert f"Artifact 'checkpoints/last.ckpt' of run {run_id} was not stored: its source {str(source)!r} changed after log_artifact" in failure
        assert "keep it unchanged until flush() returns" in failure
        assert not (store / "0" / run_id / "artifacts" / "checkpoints" / "last.ckpt").exists()
        client.log_artifact(run_id, str(source), "checkpoints")  # logged again once final: stored
        client.flush()
        assert (store / "0" / run_id / "artifacts" / "checkpoints" / "last.ckpt").read_bytes()[:8] == b"epoch-2 "
    finally:
        client.close()


def test_a_large_artifact_dated_before_1970_is_stored_with_the_events_of_its_batch(
    daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    # A file's mtime_ns is negative when it is dated before 1970 (unpacked from an old archive,
    # or utime'd by a build tool). The daemon refused its source_stamp as a protocol error, which
    # cost the whole batch: the run, its metrics and the artifact were never stored, flush()
    # hung, and the client reconnected and was refused again without end.
    source = tmp_path / "old.bin"
    source.write_bytes(b"o" * (9 * 1024 * 1024))
    os.utime(source, ns=(-86_400_000_000_000, -86_400_000_000_000))
    # By the file's own path (TRACKD_ARTIFACT_SNAPSHOT=0): a copy made at the call has a stamp of its own.
    client = Client(store, config=ClientConfig(socket_path=daemon.paths.socket, autostart=False, artifact_snapshot=False))
    try:
        run_id = client.create_run().info.run_id
        client.log_metric(run_id, "loss", 0.5)
        client.log_artifact(run_id, str(source))
        client.flush(timeout=20)
        assert (store / "0" / run_id / "artifacts" / "old.bin").read_bytes() == source.read_bytes()
        (line,) = metric_lines(store, run_id, "loss")
        assert line.split()[1:] == ["0.5", "0"]
    finally:
        client.close()


def test_a_large_artifact_only_touched_after_log_artifact_is_refused_saying_its_mtime_changed(
    daemon: DaemonProcess, store: Path, tmp_path: Path
) -> None:
    # Same size, same bytes, a later mtime: the daemon cannot tell a touch from a same-size
    # rewrite (a checkpoint of the same model), so it refuses; the message said "rewritten",
    # which sent the user looking for a writer that never was.
    source = tmp_path / "same.bin"
    source.write_bytes(b"s" * (9 * 1024 * 1024))
    # By the file's own path (TRACKD_ARTIFACT_SNAPSHOT=0): a copy made at the call has a stamp of its own.
    client = Client(store, config=ClientConfig(socket_path=daemon.paths.socket, autostart=False, artifact_snapshot=False))
    try:
        run_id = client.create_run().info.run_id
        client.flush()
        daemon.signal(signal.SIGSTOP)
        try:
            client.log_artifact(run_id, str(source))
            before = source.stat().st_mtime_ns
            os.utime(source, ns=(before + 1_000_000_000, before + 1_000_000_000))
        finally:
            daemon.signal(signal.SIGCONT)
        with pytest.raises(DeliveryError) as caught:
            client.flush()
        (failure,) = caught.value.failures
        assert f"(same size, modification time {before} ns, now {before + 1_000_000_000} ns)" in failure
    finally:
        client.close()


# The daemon's shutdown deadline made short (its config's default; the code is unchanged), so a
# copy of a few GB is still under way when it passes.
SHORT_SHUTDOWN = (
    "import functools\nfrom trackd.daemon import _config, _main\n"
    "_main.DaemonConfig = functools.partial(_config.DaemonConfig, shutdown_timeout=0.5)"
)


def test_sigterm_in_the_middle_of_a_copy_leaves_no_staged_part_and_the_batch_unacknowledged(
    socket_path: Path, store: Path, tmp_path: Path
) -> None:
    # Shutdown stops a copy at its next 64 MiB chunk, then waits for the copier threads
    # (Copies.join) before it exits: a thread still in sendfile when the process exited left its
    # partial copy of gigabytes in the store's staging folder, and its file in the page cache.
    source = tmp_path / "checkpoint.bin"
    with open(source, "wb") as sparse:
        sparse.truncate(16 * 1024**3)  # no disk used; the copy writes real zeros, stopped long before the end
    run_id = uuid.uuid4().hex
    daemon = DaemonProcess(socket_path, preamble=SHORT_SHUTDOWN).start()
    owner = RawClient(socket_path)
    try:
        assert isinstance(owner.hello(str(store), client_id="owner"), Welcome)
        owner.send(Batch(seq=1, records=[create_run_record(run_id), artifact_record(run_id, source)]))
        wait_for(lambda: any(p.name.startswith(".trackd-") for p in store.iterdir()) if store.is_dir() else False,
                 message="the copy to start")
        def copying() -> bool:
            copies = query_status(socket_path)["copies"]
            assert isinstance(copies, (list, tuple))
            return bool(copies) and copies[0]["copied"] > 0

        wait_for(copying, message="the copy to be under way")
        assert daemon.stop(timeout=60) == UNWRITTEN_EXIT_CODE, daemon.log()
        events = owner.events_until_closed()
    finally:
        owner.close()
    assert [type(event) for event in events] == [ErrorReply], events  # shutting_down; no Ack
    assert read_exit_report(daemon.paths, daemon.pid) == 2
    assert not [p for p in store.iterdir() if p.name.startswith(".trackd-")], "a partial copy was left at the store's root"
    assert StoreReader(store).find_run(run_id) is None  # the batch, its run included, was not written


def test_a_copy_stops_at_the_size_its_source_had_when_opened_and_refuses_a_source_that_held_more(
    daemon: DaemonProcess, store: Path
) -> None:
    # The copy takes the size fstat gives when the source is opened, and no more: a file that grows
    # while it is copied (a log, a file extended faster than the copy runs) copied until the disk
    # was full. Growth between that fstat and the copy cannot be timed from outside, so the source
    # is a regular file whose reads always go past its size: a /proc file (size 0, its content the
    # test's command line). Such a file was then stored empty, without a word; it is refused, and
    # only because the copy stopped at 0 bytes (a copy to the end would have stored the content).
    source = Path(f"/proc/{os.getpid()}/cmdline")
    assert source.stat().st_size == 0 and source.read_bytes()
    run_id = uuid.uuid4().hex
    owner = RawClient(daemon.paths.socket)
    try:
        assert isinstance(owner.hello(str(store), client_id="owner"), Welcome)
        owner.send(Batch(seq=1, records=[create_run_record(run_id), artifact_record(run_id, source)]))
        owner.send(Flush(request_id=1))
        events = events_until_flush_done(owner)
    finally:
        owner.close()
    assert [type(event) for event in events] == [Rejected, Ack, FlushDone]
    rejected = events[0]
    assert isinstance(rejected, Rejected)
    assert (
        f"Invalid source for artifact 'model.pt' of run {run_id}: {str(source)!r} holds more than the 0 bytes its "
        "size said when it was opened (a /proc or /sys file, whose size is not its content)"
    ) in rejected.message
    artifacts = Path(StoreReader(store).get_run(run_id).info.artifact_uri.removeprefix("file://"))
    assert not (artifacts / "model.pt").exists()  # the item refused, the rest of its batch written


def test_an_empty_file_by_path_is_stored_empty(daemon: DaemonProcess, store: Path, tmp_path: Path) -> None:
    source = tmp_path / "empty.bin"
    source.write_bytes(b"")
    run_id = uuid.uuid4().hex
    owner = RawClient(daemon.paths.socket)
    try:
        assert isinstance(owner.hello(str(store), client_id="owner"), Welcome)
        owner.send(Batch(seq=1, records=[create_run_record(run_id), artifact_record(run_id, source)]))
        owner.send(Flush(request_id=1))
        assert [type(event) for event in events_until_flush_done(owner)] == [Ack, FlushDone]
    finally:
        owner.close()
    artifacts = Path(StoreReader(store).get_run(run_id).info.artifact_uri.removeprefix("file://"))
    assert (artifacts / "model.pt").read_bytes() == b""
