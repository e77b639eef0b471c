"""``benchmarks/bench_artifact_snapshot.py`` keeps working (tiny files; timings never asserted)."""

from __future__ import annotations

from pathlib import Path

from test_benchmarks_smoke import no_daemon_left, run_script


def test_artifact_snapshot(tmp_path: Path) -> None:
    doc = run_script("bench_artifact_snapshot.py", tmp_path, "--sizes-mib", "9", "--repeats", "1", "--warmup", "0", "--dir", str(tmp_path))
    summary = doc["results"]["summary"]  # type: ignore[index]
    assert {entry["variant"] for entry in summary} >= {"trackd snapshot", "trackd by path"}
    assert all(entry["n"] == 1 for entry in summary)
    no_daemon_left(doc)
