"""Each connection's budget of decode work: events per second, as a token bucket.

Decoding and checking a record costs the event loop about a microsecond (``trackd.protocol``'s
``MAX_RECORDS_PER_BATCH`` comment), and the loop shares one GIL with the writer thread. A client
that keeps its socket full would otherwise make the daemon decode far ahead of what the writer
can write (a flooder measured 800,000 records/s decoded against 400,000-500,000 written) while a
neighbour's flush waits for the loop and the GIL.

The bucket only says how far a connection is over its budget; the connection decides whether to
pause (``ClientConnection``), because pausing only helps when someone else is waiting. Time is
passed in as ``now``, so tests drive it without sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass

# The budget binds only while another client waits on a flush or flushed within the last 0.1 s
# (ClientConnection._within_budget, Server.others_waiting), so a client alone, or beside clients
# that only stream, is never slowed by it, however fast it sends. While someone waits, a connection
# over it gets about a quarter of the loop (decoding costs up to a microsecond per record; a metric
# series' points cost about a quarter of that, so the budget counts events, not decode time) and its
# reads pause for the rest; a flooder left alone decodes ~800,000 records/s against ~400,000
# written, taking the loop and most of the GIL from the writer and the flush. In bench_fairness, a
# flush beside a flood measured ~1-4 ms p50 at 250,000 and 10-24 ms at 500,000 (0.5 ms alone).
# The price: a fast client beside a neighbour that flushes in a loop is held to this rate, below
# what the daemon writes (~350,000-500,000 points/s on 2 cores), for as long as that lasts.
DEFAULT_MAX_EVENTS_PER_SECOND = 250_000
# A full bucket: what a connection may decode at once after a quiet spell. A client's sender keeps
# at most 4 MiB of frames unacknowledged (~80,000 metric records, more as series), so a real
# client's burst mostly fits.
BURST_SECONDS = 0.5


@dataclass(slots=True)
class DecodeBudget:
    """A token bucket of decoded events: ``rate`` per second, holding at most ``rate * BURST_SECONDS``."""

    rate: float
    tokens: float
    updated: float

    @classmethod
    def full(cls, rate: float, now: float) -> DecodeBudget:
        """A budget of ``rate`` events per second, starting with a full bucket at ``now``."""
        if rate <= 0:
            raise ValueError(f"A decode budget must allow some events per second; got {rate}.")
        return cls(rate=rate, tokens=rate * BURST_SECONDS, updated=now)

    def spend(self, events: int, now: float) -> None:
        """Take ``events`` decoded at ``now``; the bucket may go into debt."""
        self._refill(now)
        self.tokens -= events

    def delay(self, now: float) -> float:
        """Seconds until the debt is paid back (0 when the connection is within its budget)."""
        self._refill(now)
        return -self.tokens / self.rate if self.tokens < 0 else 0.0

    def forgive(self) -> None:
        """Cancel the debt: decode done while nobody else waited was free."""
        self.tokens = max(self.tokens, 0.0)

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.rate * BURST_SECONDS, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
