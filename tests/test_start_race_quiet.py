"""Many processes finding no daemon at once: those waiting for another's start say nothing.

One process at a time starts a daemon (it holds the start lock, ``DaemonPaths.starting``); the
others wait for that daemon. On a loaded machine the start took over 2 s, and a process that
filled its buffer meanwhile said "no daemon answers ...; trackd keeps trying to reconnect" of a
start that went well. Here the test is the process that won the lock: it holds the real lock
while a real producer fills its buffer and waits, then starts a real daemon and lets the lock go.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import DaemonProcess, child_env

from trackd._paths import DaemonPaths
from trackd.client._on_full import STALL_WARNING_AFTER

MAX_BUFFERED = 1_000

# Logs five buffers' worth in a thread; says "full" once its buffer is, and waits for the thread.
PRODUCER = f"""
import sys, threading, time, trackd
from trackd.client import get_client
trackd.set_tracking_uri(sys.argv[1])
run = trackd.start_run()
def log():
    for step in range({5 * MAX_BUFFERED}):
        trackd.log_metric("loss", float(step), step=step)
logging = threading.Thread(target=log)
logging.start()
while get_client().stats()["buffered"] < {MAX_BUFFERED} and logging.is_alive():
    time.sleep(0.01)
stats = get_client().stats()
print("full" if stats["buffered"] >= {MAX_BUFFERED} else f"never full: {{stats}}", flush=True)
logging.join()
trackd.end_run()
"""


@pytest.fixture
def start_lock(paths: DaemonPaths) -> Iterator[int]:
    """The start lock, held by the test as by another process starting the daemon."""
    fd = os.open(paths.starting, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.lockf(fd, fcntl.LOCK_EX)
    try:
        yield fd
    finally:
        os.close(fd)


def _start_producer(paths: DaemonPaths, store: Path, **env: str) -> subprocess.Popen[str]:
    # Its start waits for the lock the test holds up to TRACKD_CONNECT_TIMEOUT, then gives the daemon
    # up and spools what is buffered: on a loaded machine the default 10 s ran out before the buffer
    # filled, which then never filled (a CI run waited 180 s for "full"). 60 s unless a test says.
    env = {"TRACKD_CONNECT_TIMEOUT": "60", **env}
    producer = subprocess.Popen(
        [sys.executable, "-c", PRODUCER, str(store)], env=child_env(paths.socket, TRACKD_MAX_BUFFERED=str(MAX_BUFFERED), **env),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert producer.stdout is not None
    assert producer.stdout.readline() == "full\n", producer.communicate(timeout=60)
    return producer


def _start_daemon_and_finish(producer: subprocess.Popen[str], paths: DaemonPaths) -> str:
    """Start the daemon, as the process holding the lock would, and return the producer's stderr
    once it exited. (The lock stays held: a waiter stops waiting for it once a daemon answers.)"""
    daemon = DaemonProcess(paths.socket).start()
    try:
        _, err = producer.communicate(timeout=60)
    finally:
        assert daemon.stop() == 0, daemon.log()
    assert producer.returncode == 0, err
    return err


def test_waiting_for_another_process_to_start_the_daemon_prints_nothing(paths: DaemonPaths, store: Path, start_lock: int) -> None:
    # This used to print "logging calls are waiting for room (2.0 s in all so far): the event buffer
    # is full (1000 events) because no daemon answers at ...; trackd keeps trying to reconnect".
    producer = _start_producer(paths, store)
    time.sleep(STALL_WARNING_AFTER + 1.5)  # the start takes this long: past the stall line's wait
    assert _start_daemon_and_finish(producer, paths) == ""


def test_dropping_while_the_daemon_starts_does_not_say_none_answers(paths: DaemonPaths, store: Path, start_lock: int) -> None:
    # This used to say "because no daemon answers at ...; trackd keeps trying to reconnect".
    producer = _start_producer(paths, store, TRACKD_ON_FULL="drop")
    err = _start_daemon_and_finish(producer, paths)
    # No attempt failed before this start (the lock is held, so the thread waits for it).
    assert f"because this process is still connecting to the daemon at {paths.socket}" in err, err
    assert "no daemon answers" not in err, err


def test_a_start_that_never_answers_is_still_said(paths: DaemonPaths, store: Path, start_lock: int, tmp_path: Path) -> None:
    # The other process holds the lock and starts nothing: after TRACKD_CONNECT_TIMEOUT the daemon
    # is unreachable, and one line says so, with where the events went (a spool folder of the
    # test's own: left in the session's, a later test's client would deliver it).
    spool_dir = tmp_path / "spool"
    producer = _start_producer(paths, store, TRACKD_CONNECT_TIMEOUT="2", TRACKD_SPOOL_DIR=str(spool_dir))
    out, err = producer.communicate(timeout=60)
    assert producer.returncode == 0, err
    assert f"{paths.socket}" in err and f"{spool_dir}/" in err, err
