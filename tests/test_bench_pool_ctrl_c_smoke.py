"""benchmarks/bench_pool_ctrl_c.py keeps working: one interrupted run per variant, its table and JSON file.

The hang rates are never asserted (a hang is CPython's race, docs/multiprocessing.md, "fork and multiprocessing");
only that every run was counted and the script's daemon is gone.
"""

from __future__ import annotations

from pathlib import Path

from test_benchmarks_smoke import no_daemon_left, run_script


def test_bench_pool_ctrl_c_counts_every_interrupted_run(tmp_path: Path) -> None:
    doc = run_script("bench_pool_ctrl_c.py", tmp_path, "-n", "1", "--variants", "trackd-ign,plain-ign", "--hang", "20", timeout=120)
    results = doc["results"]
    assert isinstance(results, dict)
    assert {variant: results[variant]["runs"] for variant in results} == {"trackd-ign": 1, "plain-ign": 1}
    no_daemon_left(doc)
