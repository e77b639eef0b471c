"""What the run ids of the daemon's wills may cost it: a bound on them all together, and log lines that count them.

A client tells the daemon the runs it owns (``OwnedRuns``, ``SpooledWill``): up to MAX_OWNED_RUNS
run ids a will, each at most MAX_RUN_ID_BYTES, kept in memory and in the wills file for as long as
the process runs, and a pending will for as long again. Only the count a will holds was bounded:
200 connections of 1,000 ids of 1,024 characters took the daemon from 27 to 370 MB and its wills
file to 196 MB, which the next daemon read back; at MAX_PENDING_WILLS it would have been ~18 GB.
"""

from __future__ import annotations

import logging

from .._words import counted

logger = logging.getLogger("trackd.daemon")

# Run ids all wills hold together (pending, being applied, and those of connections), whatever
# their count: the daemon's memory for them and its wills file (measured, 200 connections of 1,000 ids
# of 255 characters: the daemon from 28 to 69 MB, the file 26 MB, 100,000 ids refused). Tens of
# processes owning a few runs each hold hundreds. Past it a will keeps its newest runs that fit,
# and the others are refused, said in one log line and counted (status: will_runs_refused); no
# will held already loses a run to a new one.
MAX_WILL_RUN_IDS = 100_000
# Run ids a log line names; past them it counts the rest ("and 995 more").
SHOWN_RUN_IDS = 5


class RunIdBudget:
    """MAX_WILL_RUN_IDS, and the run ids refused past it."""

    def __init__(self) -> None:
        # Run ids refused since the daemon started (status: will_runs_refused).
        self.refused = 0
        # Whether a refusal was said: not again until the wills hold half as many (one line per filling).
        self._said = False

    def fit(self, run_ids: tuple[str, ...], held: int, whose: str) -> tuple[str, ...]:
        """The newest of ``run_ids`` that fit beside the ``held`` run ids of the other wills; ``whose``
        ("process 123") names the will in the line saying the others were refused."""
        room = max(MAX_WILL_RUN_IDS - held, 0)
        if len(run_ids) <= room:
            if held + len(run_ids) <= MAX_WILL_RUN_IDS // 2:
                self._said = False
            return run_ids
        self.refused += len(run_ids) - room
        if not self._said:
            self._said = True
            logger.warning(
                "The wills of the daemon's clients hold %s, and it keeps at most %s (MAX_WILL_RUN_IDS): %s's will "
                "keeps %s of its %s (the newest); the others are not marked FAILED if it is killed. Runs refused so, "
                "until the wills hold half as many, are counted in status (will_runs_refused), not said",
                counted(held, "run id", grouped=True), f"{MAX_WILL_RUN_IDS:,}", whose, f"{room:,}",
                counted(len(run_ids), "run", grouped=True),
            )
        return run_ids[len(run_ids) - room:]


def listed(run_ids: tuple[str, ...] | list[str]) -> str:
    """``run_ids`` for a log line: the first SHOWN_RUN_IDS, then how many more (each used to be
    named: a line of up to a megabyte per will)."""
    shown = ", ".join(run_ids[:SHOWN_RUN_IDS])
    return shown if len(run_ids) <= SHOWN_RUN_IDS else f"{shown} and {len(run_ids) - SHOWN_RUN_IDS:,} more"
