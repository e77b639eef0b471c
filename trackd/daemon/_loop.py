"""The one place that chooses the daemon's event loop: uvloop when installed, else stock asyncio."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

LOOP_ENV = "TRACKD_LOOP"
LOOP_CHOICES = ("auto", "uvloop", "asyncio")


def loop_from_env() -> str:
    """``$TRACKD_LOOP`` in any case (unset or empty: "auto"); a word it does not take raises
    ValueError naming the variable, as the client's TRACKD_* variables do."""
    raw = os.environ.get(LOOP_ENV, "")
    name = raw.strip().lower() or "auto"
    if name not in LOOP_CHOICES:
        raise ValueError(
            f"Environment variable {LOOP_ENV}={raw!r} is not valid: expected one of {', '.join(LOOP_CHOICES)} (any case)."
        )
    return name


def loop_factory(name: str | None = None) -> tuple[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Return the loop's name and a factory for it; ``name`` defaults to ``$TRACKD_LOOP`` or "auto".

    Raises ValueError, with a sentence for the daemon's log, for a name it does not know and for
    "uvloop" when uvloop is not installed.
    """
    name = name.lower() if name else loop_from_env()
    if name not in LOOP_CHOICES:
        raise ValueError(f"Unknown event loop {name!r}; expected one of {', '.join(LOOP_CHOICES)}.")
    if name in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError as exc:
            if name == "uvloop":
                raise ValueError(
                    f"The uvloop event loop was asked for, but uvloop cannot be imported ({exc}); "
                    "install it (pip install uvloop) or choose auto or asyncio."
                ) from None
        else:
            return "uvloop", uvloop.new_event_loop
    return "asyncio", asyncio.new_event_loop
