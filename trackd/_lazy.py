"""Names a package's ``__init__`` exports but imports only on first access (PEP 562).

``import trackd`` loads the fluent functions alone; the Client, its sender, the protocol and the
store load when the first run starts. The store keeps its own copy of this (it imports nothing
of trackd but ``errors``).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_attributes(
    package: str, modules: dict[str, str], hints: str | None = None,
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module ``__getattr__`` that imports ``{package}.{modules[name]}`` when ``name`` is first used
    (``"module:other"`` gives that module's ``other`` under ``name``, an alias; a module mapped to its
    own name is the submodule itself),
    and a ``__dir__`` that lists those names too (for ``dir()`` and tab completion). A name in
    the dict ``hints`` names (``"trackd.module:dict"``, by its full name: ``trackd.config``, a
    module, has no submodule to name it by; imported on the first miss) is still missing, but its
    AttributeError says what to use instead."""

    def __getattr__(name: str) -> Any:
        module = modules.get(name)
        if module is None:
            hint = _hint(package, hints, name)
            raise AttributeError(f"module {package!r} has no attribute {name!r}" + (f": {hint}" if hint else ""))
        module, _, attribute = module.partition(":")  # "client:Client": another name for Client
        imported = importlib.import_module(f"{package}.{module}")
        return imported if module == name else getattr(imported, attribute or name)  # a name of its own: the module

    def __dir__() -> list[str]:
        # Not "annotations": the name `from __future__ import annotations` leaves, which tab
        # completion offered as if it were trackd's.
        return sorted((set(vars(sys.modules[package])) - {"annotations"}) | set(modules))

    return __getattr__, __dir__


def _hint(package: str, hints: str | None, name: str) -> str | None:
    if hints is None or name.startswith("_"):  # a probe (__path__, __wrapped__...) imports nothing more
        return None
    module, _, attribute = hints.partition(":")
    table: dict[str, str] = getattr(importlib.import_module(module), attribute)
    return table.get(name)
