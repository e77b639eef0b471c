"""The applier's store writers: one per store, forgotten once a store goes unused."""

from __future__ import annotations

from pathlib import Path

from trackd.daemon._applier import IDLE_STORE_SWEEPS, Applier


def test_a_store_unused_for_a_while_loses_its_writer_and_gets_one_again_at_its_next_use(tmp_path: Path) -> None:
    # A test suite gives each test a store of its own (deleted after it): a daemon serving it kept
    # a writer, and its caches, for every store it had ever written, ~9 MB for 2,000 tests.
    busy, idle = str(tmp_path / "busy"), str(tmp_path / "idle")
    applier = Applier(max_open_files=64)
    try:
        first = applier.get_experiment(idle, "sweep", create=True)
        for _ in range(IDLE_STORE_SWEEPS):
            applier.get_experiment(busy, "sweep", create=True)
            applier.close_idle_files()
        assert sorted(applier.stores) == [busy, idle]  # not yet
        applier.get_experiment(busy, "sweep", create=True)
        applier.close_idle_files()
        assert applier.stores == [busy]
        # Made again from the files: the experiment is the one created before.
        assert applier.get_experiment(idle, "sweep", create=True) == first
        assert sorted(applier.stores) == [busy, idle]
    finally:
        applier.close()
