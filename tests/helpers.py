"""Real processes for tests: a daemon on a short socket path, and Python children."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from trackd import Client, ClientConfig
from trackd._paths import DaemonPaths
from trackd.client._control import query_status
from trackd.client._launcher import daemon_answers
from trackd.client._spool import SpoolReader
from trackd.protocol import NEED_DATA, PROTOCOL_VERSION, Ack, Batch, Connection, ConnectionClosed, Event, Hello, Record, RecordKind, Role, Welcome
from trackd.store import StoreReader

# AF_UNIX paths are limited to about 104-108 bytes, so sockets live in a short folder under /tmp
# rather than in pytest's deep tmp_path.
SOCKET_PARENT = Path(tempfile.gettempdir())


def short_socket_path() -> Path:
    """A fresh private socket path short enough for AF_UNIX."""
    directory = Path(tempfile.mkdtemp(prefix="td-", dir=SOCKET_PARENT))
    return directory / "d.sock"


def alive(pid: int) -> bool:
    """Whether a process with this pid exists and has not exited (a zombie waiting for its parent
    to reap it has: a daemon started by a CLI that exited waits for this container's init)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return "\nState:\tZ" not in status


@contextlib.contextmanager
def mounted_tmpfs(folder: Path, options: str) -> Iterator[None]:
    """A tmpfs mounted on ``folder`` with ``options`` ("size=2m") for the block, unmounted after;
    skips the test where mounting is not allowed."""
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True, capture_output=True)


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """``folder`` read-only (a read-only bind mount over it) for the block; skips the test where mounting is not allowed."""
    bound = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True, text=True)
    if bound.returncode != 0:
        pytest.skip(f"cannot bind-mount a folder here (needs root or CAP_SYS_ADMIN): {bound.stderr.strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], check=True, capture_output=True)
        yield
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True, capture_output=True)


def fill(path: Path) -> None:
    """Write zeros to ``path`` until the filesystem is full (a real ENOSPC for the store)."""
    chunk = b"\0" * 4096
    with open(path, "wb", buffering=0) as filler:
        try:
            while True:
                filler.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc


def wait_for(condition: object, timeout: float = 10.0, interval: float = 0.01, message: str = "condition") -> None:
    """Wait until ``condition()`` is true, failing the test after ``timeout`` seconds."""
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


class DaemonProcess:
    """A real trackd daemon in its own process."""

    def __init__(
        self, socket_path: Path, *extra_args: str, file_limit: int | None = None, preamble: str = "", wrapper: tuple[str, ...] = ()
    ) -> None:
        self.paths = DaemonPaths(socket_path)
        # A command the daemon runs under, which execs it (its pid stays the daemon's): setpriv dropping capabilities.
        self.wrapper = wrapper
        self.extra_args = list(extra_args)
        # The daemon's RLIMIT_NOFILE, soft and hard (so it cannot raise it), when given.
        self.file_limit = file_limit
        # Python run in the daemon's process before it starts: a test's scaled constants (an hour
        # made a second) or a stepped clock. The daemon's code itself is unchanged.
        self.preamble = preamble
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15.0) -> DaemonProcess:
        program = (
            ["-c", f"{self.preamble}\nimport sys\nfrom trackd.daemon import main\nsys.exit(main(sys.argv[1:]))\n"]
            if self.preamble else ["-m", "trackd.daemon"]
        )
        args = [*self.wrapper, sys.executable, *program, "--socket", str(self.paths.socket), "--log-file", str(self.paths.log), *self.extra_args]
        if self.file_limit is not None:
            args = ["/bin/sh", "-c", f'ulimit -n {self.file_limit} && exec "$@"', "sh", *args]
        process = self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for(lambda: daemon_answers(self.paths.socket, 0.2) or process.poll() is not None, timeout, message="daemon start")
        if self.process.poll() is not None:
            raise AssertionError(f"daemon exited with {self.process.returncode}: {self.log()}")
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def status(self) -> dict[str, Any]:
        """The daemon's status reply (JSON-like values, hence Any)."""
        return query_status(self.paths.socket)

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """The daemon stopped (SIGSTOP) for the block, resumed after it whatever happens: it reads
        nothing, and a new connection's Hello waits in its socket unanswered."""
        self.signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self.signal(signal.SIGCONT)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        if self.process.stderr is not None:
            self.process.stderr.close()
        return code

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)
        if self.process.stderr is not None:
            self.process.stderr.close()

    def log(self) -> str:
        try:
            return self.paths.log.read_text()
        except OSError:
            return ""


class TracedDaemon(DaemonProcess):
    """A real daemon started under ``strace`` with ``strace_args``; ``stopped()``: stopped by it."""

    def __init__(self, socket_path: Path, trace: Path, *strace_args: str) -> None:
        super().__init__(socket_path)
        self.trace = trace
        self.strace_args = list(strace_args)

    def start(self, timeout: float = 30.0) -> TracedDaemon:
        args = [
            "strace", "-qq", "-f", "-o", str(self.trace), *self.strace_args,
            sys.executable, "-m", "trackd.daemon", "--socket", str(self.paths.socket), "--log-file", str(self.paths.log),
        ]
        process = self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for(lambda: daemon_answers(self.paths.socket, 0.5) or process.poll() is not None, timeout, message="traced daemon start")
        if process.poll() is not None:
            pytest.skip(f"cannot trace a process here: {process.stderr.read().decode() if process.stderr else ''}")
        return self

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM to the daemon itself (strace would detach and leave it running), and wait."""
        assert self.process is not None
        if self.process.poll() is None:
            pid = int(self.paths.pid.read_text())
            os.kill(pid, signal.SIGTERM)
            # One the test left stopped (a failed wait for its injection) would keep its SIGTERM pending.
            os.kill(pid, signal.SIGCONT)
        code = self.process.wait(timeout)
        if self.process.stderr is not None:
            self.process.stderr.close()
        return code

    def stopped(self) -> bool:
        return "stopped by SIGSTOP" in self.trace.read_text()

    def resume(self) -> None:
        os.kill(int(self.paths.pid.read_text()), signal.SIGCONT)

    @classmethod
    def stopping_at_open(cls, socket_path: Path, trace: Path, folder: Path) -> TracedDaemon:
        """One that stops at its first openat() of ``folder``, which it makes again when resumed (an
        injected EINTR, retried by Python): the moment between a folder's check and its open."""
        return cls(
            socket_path, trace, "-P", str(folder), "-e", "trace=openat", "-e", "inject=openat:error=EINTR:signal=SIGSTOP:when=1",
        ).start()


@contextlib.contextmanager
def swapped_for_link(folder: Path, target: Path) -> Iterator[None]:
    """``folder`` moved aside and a symbolic link to ``target`` put in its place, for the block."""
    moved = folder.with_name(folder.name + ".moved")
    os.rename(folder, moved)
    folder.symlink_to(target)
    try:
        yield
    finally:
        folder.unlink()
        os.rename(moved, folder)


def store_client(store: Path, socket_path: Path) -> Client:
    """A Client of ``store`` through the daemon at ``socket_path``, never starting one."""
    return Client(str(store), config=ClientConfig(socket_path=socket_path, autostart=False, connect_timeout=5.0))


def made_run(store: Path, socket_path: Path) -> str:
    """A run in experiment 0 of ``store``, made by a plain daemon on ``socket_path`` (and stopped):
    a TracedDaemon started after it meets the run's folders only as the test says."""
    daemon = DaemonProcess(socket_path).start()
    try:
        with store_client(store, socket_path) as client:
            run_id = client.create_run("0").info.run_id
            client.flush(timeout=30)
    finally:
        daemon.stop()
    return run_id


# What trackd's fluent API writes into its own process's environment for the processes it starts:
# the runs it owns while they are active (TRACKD_OWNED_RUNS, _lineage.py), its store
# (set_tracking_uri) and experiment (set_experiment); start_run takes MLFLOW_RUN_ID out of it. In
# the pytest process they are what an in-process fluent test left: a child that inherited
# TRACKD_OWNED_RUNS took itself for a worker of a trackd parent (it sent "owned runs" with its
# Hello), and a test failed in full-suite runs only. A test that means a child to have one passes it.
FLUENT_ENVIRONMENT = ("TRACKD_OWNED_RUNS", "TRACKD_TRACKING_URI", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID")


def inherited_env(**extra: str) -> dict[str, str]:
    """The test process's environment for a child, without the fluent API's variables, plus ``extra``."""
    env = {name: value for name, value in os.environ.items() if name not in FLUENT_ENVIRONMENT}
    env.update(extra)
    return env


def child_env(socket_path: Path, **extra: str) -> dict[str, str]:
    """The environment for a child process that logs through the test's daemon (see inherited_env)."""
    env = inherited_env()
    env["TRACKD_SOCKET"] = str(socket_path)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


# A short job for the autostart tests: a run with a param and a metric (4 events), its id printed last.
SHORT_JOB = """
import trackd
with trackd.start_run() as run:
    trackd.log_param("p", "1")
    trackd.log_metric("loss", 0.5)
print("run", run.info.run_id, flush=True)
"""


# The start of a sitecustomize (sitecustomize_env) that acts in a job's interpreter between its
# connects to the daemons it starts: ``_hook_daemon_connects(before)`` makes every later connect to
# TRACKD_SOCKET that something listens on first call ``before(pid, nth, count)``: the pid in the
# daemon's pid file (TRACKD_TEST_PID_FILE), which daemon this job found listening it is (1, 2, ...)
# and which connect to it this is (after a start, 1 is the launcher's probe, 2 the handshake).
HOOK_DAEMON_CONNECTS = """
import os, socket

def _hook_daemon_connects(before):
    _connect, _connects = socket.socket.connect, {}

    def _listening():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            _connect(probe, os.environ["TRACKD_SOCKET"])
            return True
        except OSError:
            return False
        finally:
            probe.close()

    def connect(self, address):
        if address == os.environ["TRACKD_SOCKET"] and _listening():
            with open(os.environ["TRACKD_TEST_PID_FILE"]) as pid_file:
                pid = int(pid_file.read())
            _connects[pid] = _connects.get(pid, 0) + 1
            before(pid, list(_connects).index(pid) + 1, _connects[pid])
        return _connect(self, address)

    socket.socket.connect = connect
    return _listening
"""


def sitecustomize_env(socket_path: Path, tmp_path: Path, sitecustomize: str, **extra: str) -> dict[str, str]:
    """child_env for a job that autostarts its daemon, with ``sitecustomize`` run first in every Python
    process it starts (the daemon inherits its PYTHONPATH) and its store and spool in ``tmp_path``."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(sitecustomize)
    return child_env(
        socket_path, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
        TRACKD_TRACKING_URI=str(tmp_path / "mlruns"), TRACKD_SPOOL_DIR=str(tmp_path / "spool"), **extra,
    )


def run_python(code: str, env: dict[str, str], cwd: Path | None = None, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter and return its result (never raises on a non-zero exit)."""
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


class Child:
    """A Python child whose stdout and stderr lines are collected as they arrive."""

    def __init__(self, code: str, args: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=self._collect, args=(self.process.stdout, self.out), daemon=True),
            threading.Thread(target=self._collect, args=(self.process.stderr, self.err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _collect(stream: object, lines: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            lines.append(line.rstrip("\n"))

    def steps(self) -> list[tuple[int, float]]:
        """The (step, time.time()) pairs printed so far."""
        # len(p) == 3: a child killed mid-print leaves a partial last line ("step 1234"); this used
        # to raise IndexError in full-suite runs.
        return [(int(p[1]), float(p[2])) for p in (line.split() for line in list(self.out)) if len(p) == 3 and p[0] == "step"]

    def last_step(self) -> int:
        steps = self.steps()
        return steps[-1][0] if steps else -1

    def wait(self, timeout: float) -> int:
        """Wait for the exit (killing it after ``timeout``) and for its output; returns the exit status."""
        try:
            code = self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(10)
            for reader in self._readers:
                reader.join(10)
            for stream in (self.process.stdout, self.process.stderr):
                if stream is not None:
                    stream.close()
        return code

    def stderr(self) -> str:
        return "\n".join(self.err)

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.wait(timeout=10)


class RawClient:
    """A protocol client driven by hand on a plain socket, for tests that need exact frames."""

    def __init__(self, socket_path: Path, timeout: float = 10.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(socket_path))
        self.protocol = Connection(Role.CLIENT)

    def hello(self, store_root: str, *, protocol_version: int = PROTOCOL_VERSION, client_id: str = "raw-client") -> Event:
        """Send Hello and return the daemon's answer (Welcome or ErrorReply)."""
        self.send(Hello(protocol_version=protocol_version, client_id=client_id, pid=os.getpid(), host="test", store_root=store_root))
        return self.next_event()

    def send(self, event: Event) -> None:
        self.sock.sendall(self.protocol.send(event))

    def send_bytes(self, data: bytes) -> None:
        self.sock.sendall(data)

    def next_event(self) -> Event:
        """The next event from the daemon; ConnectionClosed once it has closed the socket."""
        while (event := self.protocol.next_event()) is NEED_DATA:
            self.protocol.receive_data(self.sock.recv(64 * 1024))
        assert isinstance(event, Event)
        return event

    def replies_until_ack(self, seq: int) -> list[Event]:
        """Every event before the daemon's Ack of batch ``seq`` (its Rejected items, ...)."""
        events: list[Event] = []
        while (event := self.next_event()) != Ack(seq=seq):
            events.append(event)
        return events

    def events_until_closed(self) -> list[Event]:
        """Every event up to the daemon closing the connection (ConnectionClosed not included)."""
        events: list[Event] = []
        while not isinstance(event := self.next_event(), ConnectionClosed):
            events.append(event)
        return events

    def close(self) -> None:
        self.sock.close()


def replies_to_batch(socket_path: Path, store: Path, records: list[Record]) -> list[Event]:
    """Send ``records`` as one batch of a new raw client of ``store``; the daemon's replies before its Ack."""
    raw = RawClient(socket_path)
    try:
        welcome = raw.hello(str(store), client_id=f"raw-{os.getpid()}-{time.monotonic_ns()}")
        assert isinstance(welcome, Welcome), welcome
        raw.send(Batch(seq=1, records=records))
        return raw.replies_until_ack(1)
    finally:
        raw.close()


def refusal(socket_path: Path) -> Event:
    """Connect as a data client to a daemon that turns it away, before its Hello or (over
    --max-connections, where a status request is let in) at it, and return why (its one reply)."""
    raw = RawClient(socket_path)
    try:
        # The daemon may send its ErrorReply before reading a Hello; the protocol takes it once one was sent.
        hello = Hello(protocol_version=PROTOCOL_VERSION, client_id="refused", pid=1, host="", store_root="/refused/mlruns")
        frame = raw.protocol.send(hello)
        with contextlib.suppress(OSError):  # refused before it, the connection may be closed already
            raw.send_bytes(frame)
        (reply,) = raw.events_until_closed()
    finally:
        raw.close()
    return reply


def create_run_record(run_id: str) -> Record:
    """The record that creates ``run_id`` in experiment 0."""
    return (RecordKind.CREATE_RUN.value, run_id, "0", "tester", "raw-run", 1_700_000_000_000, {})


def metric_records(run_id: str, key: str, count: int) -> list[Record]:
    """``count`` points of ``key``, steps 0..count-1."""
    return [(RecordKind.METRIC.value, run_id, key, step * 0.5, 1_700_000_000_000 + step, step) for step in range(count)]


def metric_lines(store: Path, run_id: str, key: str, experiment_id: str = "0") -> list[str]:
    """The raw lines of a metric file in ``store`` (MLflow's "timestamp value step" format)."""
    return (store / experiment_id / run_id / "metrics" / key).read_text().splitlines()


def steps_in_store(store: Path, run_id: str, key: str = "x") -> list[int]:
    """The steps of metric ``key`` of ``run_id`` in ``store``, in the order of its file."""
    return [m.step for m in StoreReader(store).get_metric_history(run_id, key)]


def spooled_events(spool_dir: Path) -> int:
    """The events in the one spool file in ``spool_dir``."""
    (path,) = spool_dir.glob("*.spool")
    with SpoolReader(path.open("rb"), path) as reader:
        return sum(records for _, records, _ in reader.batches())
