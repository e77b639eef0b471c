"""trackd.store's __all__ lists exactly its public names."""

from __future__ import annotations

import trackd.store


def test_all_lists_every_public_name_of_the_store_package() -> None:
    public = {name for name in vars(trackd.store) if not name.startswith("_") and name != "annotations"}
    # The daemon-only names load on first access (PEP 562), so they may not be in vars() yet.
    lazy = set(trackd.store._LAZY)
    assert sorted(trackd.store.__all__) == sorted(public | lazy)
    assert all(getattr(trackd.store, name) is not None for name in lazy)
