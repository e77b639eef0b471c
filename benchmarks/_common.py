"""Shared pieces of the benchmark scripts: a daemon in its own process, /proc readings, statistics,
the fixed-width table and the ``--json`` file.

Not a benchmark itself. Every script imports it as ``_common`` (``python benchmarks/bench_x.py``
puts this folder first on ``sys.path``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# Socket paths of the daemons this process started (the JSON file lists them, so a test can check
# that none is left running).
STARTED_SOCKETS: list[str] = []
# Date, load average and git state when the script started (set by base_parser()).
_START: dict[str, Any] | None = None
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


# -- statistics ---------------------------------------------------------------------------------


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """The q-quantile of already sorted values (nearest rank, as latency reports use)."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, int(round(q * len(sorted_values) + 0.5)) - 1))
    return float(sorted_values[index])


def summarize_ns(samples: Iterable[int]) -> dict[str, float]:
    """p50 / p99 / p99.9 / max / mean of nanosecond samples, in nanoseconds."""
    values = sorted(samples)
    n = len(values)
    return {
        "n": n,
        "p50": quantile(values, 0.50),
        "p99": quantile(values, 0.99),
        "p999": quantile(values, 0.999),
        "max": float(values[-1]) if values else float("nan"),
        "mean": (sum(values) / n) if n else float("nan"),
    }


def median(values: Iterable[float]) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def timer_overhead_ns(n: int = 200_000) -> dict[str, float]:
    """What an empty ``perf_counter_ns()`` pair measures: every per-call sample includes it."""
    clock = time.perf_counter_ns
    samples = [0] * n
    for i in range(n):
        t0 = clock()
        samples[i] = clock() - t0
    return summarize_ns(samples)


# -- formatting -----------------------------------------------------------------------------------


def us(ns: float) -> str:
    """Nanoseconds as microseconds with sensible precision."""
    value = ns / 1000
    if value != value:  # NaN
        return "-"
    if value < 10:
        return f"{value:.2f}"
    if value < 1000:
        return f"{value:.1f}"
    return f"{value:,.0f}"


def num(value: float, digits: int = 0) -> str:
    if value != value:
        return "-"
    return f"{value:,.{digits}f}"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> str:
    """Print (and return) a fixed-width table: first column left-aligned, the rest right-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def fmt(row: Sequence[str]) -> str:
        return "  ".join(row[i].ljust(widths[i]) if i == 0 else row[i].rjust(widths[i]) for i in range(len(row)))

    lines = []
    if title:
        lines.append(title)
    lines.append(fmt(cells[0]))
    lines.append("  ".join("-" * w for w in widths))
    lines.extend(fmt(row) for row in cells[1:])
    text = "\n".join(lines)
    print(text, flush=True)
    return text


# -- environment and JSON -------------------------------------------------------------------------


def environment(loop: str | None = None) -> dict[str, Any]:
    """Python, platform, CPUs, loop and trackd version, for the JSON file."""
    try:
        import trackd

        version = trackd.__version__
    except Exception:  # pragma: no cover - the venv always has trackd
        version = "not installed"
    global _START
    if _START is None:
        _START = _start_state()
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "loop": loop,
        "trackd_version": version,
        "load_average_at_start": _START["load"],
        "load_average_at_end": os.getloadavg(),
        "date": _START["date"],
        "date_at_end": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git": _START["git"],
        "daemon_sockets": list(STARTED_SOCKETS),
        "argv": sys.argv,
    }


def _start_state() -> dict[str, Any]:
    return {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "load": os.getloadavg(), "git": _git_state()}


def _git_state() -> dict[str, Any]:
    """The commit measured, and whether trackd/ had uncommitted edits (the install is editable)."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=HERE, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"commit": git("rev-parse", "HEAD"), "dirty_trackd_files": git("status", "--porcelain", "--", "../trackd").splitlines()}


def base_parser(doc: str | None) -> argparse.ArgumentParser:
    """An argparse parser with the options every script has: --json and --seed.

    Also notes the date, load average and commit at the start, for the JSON file.
    """
    global _START
    if _START is None:
        _START = _start_state()
    first = (doc or "").strip().splitlines()[0] if doc else None
    parser = argparse.ArgumentParser(description=first, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--json", metavar="PATH", help="write parameters, environment and raw results to this file")
    parser.add_argument("--seed", type=int, default=1234, help="random seed for generated values")
    return parser


def write_json(path: str | None, params: dict[str, Any], results: Any, loop: str | None = None) -> None:
    if not path:
        return
    document = {"parameters": params, "environment": environment(loop), "results": results}
    Path(path).write_text(json.dumps(document, indent=2, sort_keys=True, default=str))
    print(f"\nwrote {path}", flush=True)


# -- /proc readings -------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (and its waited-for children: none for the daemon), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # After the ")" the fields start at "state" (field 3), so utime (14) and stime (15) are 11 and 12.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def rss_kb(pid: int) -> int:
    """VmRSS of a process in KiB (-1 once it has gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


# -- the daemon under test ------------------------------------------------------------------------


def daemon_answers(socket_path: Path, timeout: float = 0.2) -> bool:
    from trackd.client._launcher import daemon_answers as answers

    return answers(socket_path, timeout)


class Daemon:
    """A trackd daemon in its own process, on a short private socket path under /tmp, with its own
    temporary store; ``stop()`` (or leaving the ``with`` block) ends it and removes both.

    AF_UNIX paths are limited to about 104 bytes, so the socket lives in ``/tmp/tdb-XXXX/d.sock``.
    """

    def __init__(self, *extra_args: str, loop: str | None = None, keep: bool = False, env: dict[str, str] | None = None) -> None:
        """``env``: added to the daemon's environment (``PYTHONPATH`` of another trackd's code); the
        daemon then starts in its own folder, so that the current one (first on ``sys.path``) is not this tree."""
        self.extra_env = env
        self.directory = Path(tempfile.mkdtemp(prefix="tdb-", dir="/tmp"))
        self.socket = self.directory / "d.sock"
        self.log = self.directory / "d.sock.log"
        self.store = self.directory / "mlruns"
        self.loop = loop
        self.extra_args = list(extra_args)
        self.keep = keep
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 20.0) -> Daemon:
        args = [sys.executable, "-m", "trackd.daemon", "--socket", str(self.socket), "--log-file", str(self.log),
                "--log-level", "WARNING"]
        if self.loop:
            args += ["--loop", self.loop]
        args += self.extra_args
        env, cwd = (None, None) if self.extra_env is None else ({**os.environ, **self.extra_env}, self.directory)
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        env=env, cwd=cwd)
        STARTED_SOCKETS.append(str(self.socket))
        deadline = time.monotonic() + timeout
        while not daemon_answers(self.socket):
            if self.process.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.process.returncode}: {self.read_log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"daemon did not answer within {timeout} s: {self.read_log()}")
            time.sleep(0.01)
        return self

    def env(self, **extra: str) -> dict[str, str]:
        """The environment for a process that logs through this daemon (and never starts another)."""
        env = dict(os.environ)
        env.update(
            TRACKD_SOCKET=str(self.socket),
            TRACKD_TRACKING_URI=str(self.store),
            TRACKD_AUTOSTART="0",
            # Its own spool folder: a client delivers the spool files it finds after connecting, and
            # one left in the user's folder by another run costs every short process ~45 ms here.
            TRACKD_SPOOL_DIR=str(self.directory / "spool"),
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        return env

    def apply_env(self, **extra: str) -> None:
        """Point this process's own trackd client at the daemon (before the first trackd call)."""
        os.environ.update({k: v for k, v in self.env(**extra).items() if k.startswith("TRACKD_")})

    def suspend(self) -> None:
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def _signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)

    def read_log(self) -> str:
        try:
            return self.log.read_text()[-2000:]
        except OSError:
            return ""

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGCONT (in case it was stopped), SIGTERM, wait; SIGKILL if it hangs. Removes the temp dir."""
        code = None
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGCONT)
                self.process.send_signal(signal.SIGTERM)
                try:
                    code = self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    code = self.process.wait(10)
            else:
                code = self.process.returncode
        if not self.keep:
            shutil.rmtree(self.directory, ignore_errors=True)
        return code


def checkout(rev: str, into: Path) -> str:
    """The trackd package of git revision ``rev`` (``git archive``), unpacked under ``into``; its PYTHONPATH."""
    import tarfile

    archive = subprocess.run(["git", "archive", "--format=tar", rev, "trackd"], cwd=HERE.parent,
                             capture_output=True, check=True).stdout
    tar_path = into / "trackd.tar"
    tar_path.write_bytes(archive)
    with tarfile.open(tar_path) as tar:
        tar.extractall(into, filter="data")
    return str(into)


def temp_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def mlflow_env(store: Path, **extra: str) -> dict[str, str]:
    """An environment for an MLflow process writing a ``file://`` store (3.x needs the opt-in)."""
    env = dict(os.environ)
    env.update(
        MLFLOW_TRACKING_URI=store.as_uri(),
        MLFLOW_ALLOW_FILE_STORE="true",
        MLFLOW_DISABLE_TELEMETRY="true",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def have_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
