"""The benchmark scripts keep working: each runs with tiny arguments and writes its JSON file.

Timings are never asserted (they depend on the machine); only that a script exits 0, prints its
table and writes parameters, environment and results. A peer library that is not installed is
skipped with the reason (``pip install -e '.[bench]'`` installs them).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import inherited_env

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def run_script(name: str, tmp_path: Path, *args: str, timeout: float = 60) -> dict[str, object]:
    out = tmp_path / f"{name}.json"
    env = inherited_env(MLFLOW_ALLOW_FILE_STORE="true", MLFLOW_DISABLE_TELEMETRY="true", PYTHONUNBUFFERED="1")
    # Whatever the script does, its daemons use their own sockets: never the user's daemon.
    env.pop("TRACKD_SOCKET", None)
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / name), *args, "--json", str(out)],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp_path,
    )
    assert proc.returncode == 0, f"{name} exited {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    assert "---" in proc.stdout, "the fixed-width table is missing"
    document: dict[str, Any] = json.loads(out.read_text())
    assert {"parameters", "environment", "results"} <= document.keys()
    assert document["environment"]["trackd_version"]
    assert document["environment"]["cpu_count"]
    return document


def no_daemon_left(document: dict[str, object], *, started: bool = True) -> None:
    """The script stopped every daemon it started (the JSON file names their sockets)."""
    sockets = document["environment"]["daemon_sockets"]  # type: ignore[index]
    assert bool(sockets) == started, f"daemon sockets in the JSON file: {sockets}"
    running = subprocess.run(["pgrep", "-af", "trackd.daemon"], capture_output=True, text=True).stdout
    left = [line for line in running.splitlines() if any(f"--socket {s} " in line + " " for s in sockets)]
    assert not left, f"a benchmark daemon was left running: {left}"


def test_hot_path(tmp_path: Path) -> None:
    doc = run_script("bench_hot_path.py", tmp_path, "--calls", "200", "--slow-calls", "50", "--repeats", "1", "--warmup", "20")
    results = doc["results"]
    assert isinstance(results, dict)
    phases = results["phases"]
    assert set(phases) == {"running", "stopped"}
    # Behaviour, not speed: the stopped phase never filled the buffer (the non-blocking path).
    assert phases["stopped"]["_buffer"]["filled"] is False
    assert phases["stopped"]["log_metric"]["n"] == 200
    no_daemon_left(doc)


def test_throughput(tmp_path: Path) -> None:
    doc = run_script("bench_throughput.py", tmp_path, "--points", "2000", "--producers", "1,2", "--repeats", "1")
    summary = doc["results"]["summary"]  # type: ignore[index]
    assert {(s["loop"], s["producers"]) for s in summary} == {("uvloop", 1), ("uvloop", 2), ("asyncio", 1), ("asyncio", 2)}
    no_daemon_left(doc)


@pytest.mark.parametrize(
    ("peer", "module"),
    [("trackd", "trackd"), ("mlflow_batch", "mlflow"), ("tensorboardx", "tensorboardX"), ("wandb", "wandb")],
)
def test_vs_peers(tmp_path: Path, peer: str, module: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (pip install -e '.[bench]' installs the benchmark peers)")
    doc = run_script("bench_vs_peers.py", tmp_path, "--peers", peer, "--points", "200", "--batch-points", "1000",
                     "--slow-points", "50", "--repeats", "1", "--warmup-steps", "2")
    summary = doc["results"]["summary"]  # type: ignore[index]
    assert summary[peer]["points"] > 0
    no_daemon_left(doc, started=peer.startswith("trackd"))


def test_scale(tmp_path: Path) -> None:
    doc = run_script("bench_scale.py", tmp_path, "--sizes", "10,200", "--points", "400", "--max-open-files", "64")
    summary = doc["results"]["summary"]  # type: ignore[index]
    assert [s["files"] for s in summary] == [10, 200]
    # The daemon honours its cap on open metric files (a few more fds are its socket, log, journal...).
    assert summary[1]["fds_peak"] < 64 + 40
    no_daemon_left(doc)


def test_short_processes(tmp_path: Path) -> None:
    doc = run_script("bench_short_processes.py", tmp_path, "-n", "2", "--warmup", "0", "--points", "10", "--no-mlflow")
    summary = doc["results"]["summary"]  # type: ignore[index]
    assert [s["n"] for s in summary] == [2, 2, 2]
    no_daemon_left(doc)


def test_fairness(tmp_path: Path) -> None:
    doc = run_script("bench_fairness.py", tmp_path, "--rounds", "5", "--warmup", "1", "--repeats", "1", "--slow", "2",
                     "--flood-points", "100", "--artifact-mib", "9")
    assert doc["results"]
    no_daemon_left(doc)


def test_client_memory(tmp_path: Path) -> None:
    doc = run_script("bench_client_memory.py", tmp_path, "--points", "200", "--repeats", "1", "--artifacts", "4", "--stall", "0.5")
    summary = doc["results"]["summary"]  # type: ignore[index]
    assert [s["n"] for s in summary] == [1, 1, 1]
    # Behaviour, not size: every point was delivered (the buffer's block policy drops nothing).
    assert summary[2]["dropped"] == 0
    artifacts = doc["results"]["artifacts"]  # type: ignore[index]
    assert [(s["variant"], s["n"], s["dropped"]) for s in artifacts] == [("daemon stopped (SIGSTOP)", 1, 0), ("no daemon (spooled)", 1, 0)]
    assert all(s["rss_mb"] > 0 and s["hwm_mb"] >= s["rss_mb"] for s in summary)
    no_daemon_left(doc)


def test_spool_replay(tmp_path: Path) -> None:
    doc = run_script("bench_spool_replay.py", tmp_path, "--spool-mb", "2", "--repeats", "1", timeout=120)
    results = doc["results"]
    assert isinstance(results, dict)
    # Behaviour, not memory: every variant delivered its spool (the script raises otherwise).
    assert {(s["variant"], s["size"]) for s in results["summary"]} == {
        (variant, size) for variant in ("process resends its spool", "trackd sync of a spool") for size in ("1 MiB (baseline)", "2 MiB")
    }
    no_daemon_left(doc)
