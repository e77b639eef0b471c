"""trackd's and trackd.client's __all__ list exactly their public names, eager and lazy (PEP 562)."""

from __future__ import annotations

import re
import types

import pytest

import trackd
import trackd.client


@pytest.mark.parametrize("package", [trackd, trackd.client], ids=lambda p: p.__name__)
def test_all_lists_every_public_name_of_the_package(package: types.ModuleType) -> None:
    public = {name for name, value in vars(package).items() if not name.startswith("_") and not isinstance(value, types.ModuleType)}
    public.discard("annotations")
    # Names that load the client or the store on first access may not be in vars() yet.
    lazy = set(package._LAZY)
    version = {"__version__"} & set(package.__all__)
    assert sorted(package.__all__) == sorted(public | lazy | version)
    assert all(getattr(package, name) is not None for name in package.__all__)


@pytest.mark.parametrize("package", [trackd, trackd.client], ids=lambda p: p.__name__)
def test_dir_lists_the_names_that_load_on_first_access(package: types.ModuleType) -> None:
    # dir() and tab completion would otherwise miss them until something loaded them.
    assert set(package.__all__) <= set(dir(package))
    assert "annotations" not in dir(package)  # the __future__ import's name is not trackd's


@pytest.mark.parametrize(("name", "says"), [("search_experiments", "trackd.Client().search_experiments"), ("delete_run", "MLflow itself")])
def test_an_mlflow_function_trackd_leaves_out_says_what_to_use_instead(name: str, says: str) -> None:
    # Code ported with `import trackd as mlflow` got a bare AttributeError.
    with pytest.raises(AttributeError, match=f"has no attribute '{name}': .*{re.escape(says)}"):
        getattr(trackd, name)
    assert not hasattr(trackd, name)
