"""Names a package's ``__init__`` exports but imports only on first access (PEP 562).

``import trackd`` loads the fluent functions alone; the Client, its sender, the protocol and the
store load when the first run starts. The store keeps its own copy of this (it imports nothing
of trackd but ``errors``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_attributes(package: str, modules: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``{package}.{modules[name]}`` when ``name`` is first used."""

    def __getattr__(name: str) -> Any:
        module = modules.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    return __getattr__
