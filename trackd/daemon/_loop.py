"""The one place that chooses the daemon's event loop: uvloop when installed, else stock asyncio."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

LOOP_ENV = "TRACKD_LOOP"
LOOP_CHOICES = ("auto", "uvloop", "asyncio")


def loop_factory(name: str | None = None) -> tuple[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Return the loop's name and a factory for it; ``name`` defaults to ``$TRACKD_LOOP`` or "auto"."""
    name = name or os.environ.get(LOOP_ENV) or "auto"
    if name not in LOOP_CHOICES:
        raise ValueError(f"Unknown event loop {name!r}; expected one of {', '.join(LOOP_CHOICES)}.")
    if name in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if name == "uvloop":
                raise
        else:
            return "uvloop", uvloop.new_event_loop
    return "asyncio", asyncio.new_event_loop
