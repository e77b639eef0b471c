"""What was refused since a flush() last took it, held in bounded memory, and the sentence that says so.

A process that never calls flush() (most training scripts) holds its refusals until it exits. A
run deleted mid-training (``MlflowClient.delete_run``, as a user in the UI) has each of its metric
keys refused in every batch, for as long as the job runs: a sentence kept per refusal grew by
gigabytes a day. So an item refused again for the same reason is counted on the sentence that
named it, and past ``MAX_NAMED_ITEMS`` items the rest are counted, not named. Every count stays
exact: flush()'s DeliveryError and exit's line count each refusal and each event.
"""

from __future__ import annotations

from .._words import counted
from ._outbox import events

# A sentence is ~150 bytes (an item, a run id, the store's reason; the protocol bounds each of
# those at MAX_TEXT_LENGTH), so ~15 KB a sender however long the job. A hundred is more than anyone
# reads in a traceback, and still names each key of a run whose params, tags and metrics were all
# refused at once (a deleted run's), where the first few would name only one kind.
MAX_NAMED_ITEMS = 100


class Named:
    """An item refused, named once however often it is refused again for the same reason."""

    __slots__ = ("events", "first", "item", "items", "points", "reason", "times")

    def __init__(self, item: str, reason: str | None, first: str, *, events: int, points: bool, items: int = 1) -> None:
        self.item = item  # as the daemon names it, without its count of points
        self.reason = reason  # None: ``item`` is a whole sentence (one of this process's own losses)
        self.first = first  # the sentence of its first refusal, as said then
        self.events = events
        self.points = points  # its events are a metric's points, counted so in its sentence
        self.times = 1
        # The refused items its refusals stand for: ``times``, but for a daemon's count of those it
        # did not name (protocol Rejected.rest), which is named as one.
        self.items = items

    def sentence(self) -> str:
        """The sentence of its first refusal, or, refused again since, one that counts them all."""
        if self.times == 1:
            return self.first
        count = counted(self.events, "point") if self.points else events(self.events)
        said = f"{self.item} ({count}, refused {self.times} times)"
        return said if self.reason is None else f"{said}: {self.reason}"


class Refusals:
    """The refusals since they were last taken: each counted, the first ``MAX_NAMED_ITEMS`` items named."""

    __slots__ = ("_index", "events", "items", "named", "unnamed_events", "unnamed_items", "warned")

    def __init__(self) -> None:
        self.named: list[Named] = []
        self._index: dict[tuple[str, str | None], int] = {}
        # "Logged items" as the sentences count them: an item refused in two batches counts twice.
        self.items = 0
        self.events = 0
        self.unnamed_items = 0  # past MAX_NAMED_ITEMS
        self.unnamed_events = 0
        self.warned: int | None = None  # the index in ``named`` of the item the warning on stderr named

    def __bool__(self) -> bool:
        return self.items > 0

    def add(self, records: int, sentence: str) -> int | None:
        """Count a refusal of ``records`` events that ``sentence`` says; the index in ``named`` of
        the item it counts on, or None (not named)."""
        return self._add(sentence, None, records, sentence, points=False)

    def add_item(self, item: str, reason: str, records: int, *, items: int = 1) -> int | None:
        """Count the daemon's refusal of ``item`` (``records`` events) for ``reason`` (see ``add``);
        ``items``: the refused items it stands for (a daemon counts those past the ones it names in one)."""
        # The daemon adds a metric's count of points to its name when there are more than one
        # ("metric 'loss' of run ... (400 points)", store/_write_rules.with_points): the same key
        # in the next batch is the same item.
        suffix = f" ({records} points)"
        points = records != 1 and item.endswith(suffix)
        return self._add(
            item.removesuffix(suffix) if points else item, reason, records, f"{item}: {reason}", points=points, items=items,
        )

    def _add(self, item: str, reason: str | None, records: int, first: str, *, points: bool, items: int = 1) -> int | None:
        self.items += items
        self.events += records
        index = self._index.get((item, reason))
        if index is not None:
            named = self.named[index]
            named.times += 1
            named.items += items
            named.events += records
            named.points = named.points or points
            return index
        if len(self.named) >= MAX_NAMED_ITEMS:
            self.unnamed_items += items
            self.unnamed_events += records
            return None
        self._index[(item, reason)] = len(self.named)
        self.named.append(Named(item, reason, first, events=records, points=points, items=items))
        return len(self.named) - 1

    def sentences(self) -> list[str]:
        """``DeliveryError.failures``: a sentence for each item named, and a last one counting the
        refusals not named, if any."""
        said = [named.sentence() for named in self.named]
        if self.unnamed_items:
            more = counted(self.unnamed_items, "more refused item")
            said.append(f"... and {more} ({events(self.unnamed_events)}) not listed")
        return said

    def message(self, *, warned: bool = False) -> str:
        """The sentence that counts every refusal and names the first item; with ``warned``, not the
        item that the warning on stderr named as it was refused (``self.warned``)."""
        # Not "the daemon refused": some are this process's own losses (a spool file removed by hand,
        # records that could not be encoded), and each sentence says why.
        said = f"{counted(self.items, 'logged item')}, {events(self.events)}, will not be written"
        skip = self.warned if warned else None
        first = next((named for index, named in enumerate(self.named) if index != skip), None)
        if first is None:
            assert skip is not None, "a refusal is named unless MAX_NAMED_ITEMS were before it"
            again = self.named[skip].times - 1
            if not again:
                return f"{said}: the refusal warned of above."
            return f"{said}: the refusal warned of above, and {again} more of that item for the same reason."
        more = self.items - first.items
        if not more:
            return f"{said}: {first.sentence()}"
        if skip is None:
            return f"{said}: {first.sentence()} (and {more} more)"
        return f"{said}: {first.sentence()} (and {more} more, " + ("warned of above)" if more == 1 else "one of them warned of above)")
