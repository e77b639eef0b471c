"""``benchmarks/bench_daemon_artifact_copy.py`` keeps working (a tiny file; timings never asserted)."""

from __future__ import annotations

from pathlib import Path

from test_benchmarks_smoke import run_script


def test_daemon_artifact_copy(tmp_path: Path) -> None:
    doc = run_script("bench_daemon_artifact_copy.py", tmp_path, "--sizes-mib", "9", "--repeats", "1", "--warmup", "0", "--dir", str(tmp_path))
    summary = doc["results"]["summary"]  # type: ignore[index]
    assert {entry["variant"] for entry in summary} == {"copy_file_range", "sendfile"}
    assert all(entry["n"] == 1 for entry in summary)
