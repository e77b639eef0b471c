"""Counts in words, for every part's messages: "1 event", "3 events", "1 batch", "2 processes".

Top level, beside ``errors.py``, so that the client, the daemon, the store and the CLI say a
count the same way without importing each other (docs/architecture.md, "Where each concept lives").
"""

from __future__ import annotations

# Nouns whose plural adds "es" ("batch" -> "batches", "process" -> "processes").
_ES_ENDINGS = ("s", "x", "z", "ch", "sh")


def counted(count: object, noun: str, plural: str | None = None, *, grouped: bool = False) -> str:
    """``count`` and ``noun``, the noun agreeing: "1 event", "0 events", "3 batches".

    ``plural`` when adding "s" or "es" is wrong ("1 copy", "2 copies"); ``grouped`` writes an int
    with thousands separators (1,234,567), as ``trackd daemon status`` does.
    """
    if count != 1:
        noun = plural or (f"{noun}es" if noun.endswith(_ES_ENDINGS) else f"{noun}s")
    shown = f"{count:,}" if grouped and isinstance(count, int) else str(count)
    return f"{shown} {noun}"
