"""trackd.store's __all__ lists exactly its public names."""

from __future__ import annotations

import trackd.store


def test_all_lists_every_public_name_of_the_store_package() -> None:
    public = {name for name in vars(trackd.store) if not name.startswith("_") and name != "annotations"}
    assert sorted(trackd.store.__all__) == sorted(public)
