"""benchmarks/bench_many_keys.py keeps working: a tiny round of each variant, its table and JSON file.

Timings are never asserted; only that every round wrote every key (the script counts the files)
and that the script's daemons are gone.
"""

from __future__ import annotations

from pathlib import Path

from test_benchmarks_smoke import no_daemon_left, run_script


def test_bench_many_keys_writes_every_key_of_every_round(tmp_path: Path) -> None:
    doc = run_script("bench_many_keys.py", tmp_path, "--params", "20", "--tags", "5", "--metrics", "10", "--repeats", "1", timeout=120)
    results = doc["results"]
    assert isinstance(results, dict)
    trackd = [s for s in results["summary"] if s["variant"] == "trackd (this tree)"]
    assert len(trackd) == 1 and trackd[0]["n"] == 1
    assert results["raw"]["trackd (this tree)"][0]["files"]["params"] == 20
    no_daemon_left(doc)
