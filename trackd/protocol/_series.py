"""Metric series: a chunk of METRIC records packed as METRIC_SERIES records, for the sender.

This module owns how the client turns its buffered metric points into series (``metric_series``):
a training loop logs the same keys in the same order every step, so its points go as columns of
values, timestamps and steps, which cost less to pack, send and check than one record each.
Finding the cycles and grouping the points run in C (zip, slices, index, itemgetter); the daemon
reads a series as the same points in the same order per (run, key) file (``_records`` checks it).
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any

from ._records import METRIC, METRIC_SERIES, Record


def metric_series(records: list[Record]) -> list[Record] | None:
    """The same points as METRIC_SERIES records, where ``records`` are metric points in repeating cycles.

    A training loop logs the same keys of the same run in the same order every step, so the
    records repeat with some period p, and series j is every p-th record from j: columns by
    zip(*) and slices, all in C (~0.13 us a point with packing, less than packing the records).
    The first p (run, key) pairs of a cycle must be distinct, so each file's points keep their
    order. Where the cycle breaks (an eval metric every N steps), the stretch so far becomes
    series, what breaks it travels as plain records, and a new cycle starts after it. When most of
    the chunk has no cycle, its points are grouped per (run, key) instead (``_grouped``). Returns
    None when neither helps (other kinds mixed in, too few points a file): the records then travel
    as they are.
    """
    if not records or len(records[0]) != 6:
        return None
    try:
        kinds, run_ids, keys, values, timestamps, steps = zip(*records)
    except ValueError:  # records of other lengths mixed in
        return None
    if kinds.count(METRIC) != len(kinds):
        return None
    out: list[Record] = []
    plain = 0
    hopeless: set[Any] = set()
    start, n = 0, len(keys)
    while start < n:
        end, period = _cycle_at(run_ids, keys, start, hopeless)
        if end - start < 2 * period:
            # Fewer than two points a series on average: plain records cost less. Give up on a
            # chunk that keeps breaking its cycles, so a shuffled one costs no more than this.
            out.extend(records[start:end])
            plain += end - start
            if plain > _MAX_PLAIN and plain * 2 > start:
                out.extend(records[end:])
                plain += n - end
                break
        else:
            out.extend(
                (METRIC_SERIES, run_ids[j], keys[j], values[j:end:period], timestamps[j:end:period], steps[j:end:period])
                for j in range(start, start + period)
            )
        start = end
    if plain * 2 > n:
        # Mostly no cycle (threads logging their own keys in turn, keys in no set order): each
        # file's points can still go together.
        grouped = _grouped(records, run_ids, keys, values, timestamps, steps)
        if grouped is not None:
            return grouped
    return None if plain == n else out


def _grouped(
    records: list[Record], run_ids: tuple[Any, ...], keys: tuple[Any, ...],
    values: tuple[Any, ...], timestamps: tuple[Any, ...], steps: tuple[Any, ...],
) -> list[Record] | None:
    """The points as one series per (run, key), in their order in ``records``; a pair with a
    single point stays a record. None when the pairs hold fewer than _GROUP_POINTS points each on
    average: a series of two costs the daemon more to check than two records (columns checked in
    C pay per series, 5,000 two-point series 10.3 ms against 2.7 for their 10,000 records).

    The daemon writes each file's points in the order they come and nothing else: files do not
    depend on one another, so points of different files may travel in any order.
    """
    n = len(records)
    # A look at the first records first, in C: a sweep over 10,000 files, each once a chunk, stops here.
    sample = min(n, _GROUP_SAMPLE)
    if len(set(zip(run_ids[:sample], keys[:sample]))) * _GROUP_POINTS > sample:
        return None
    groups: dict[tuple[Any, Any], list[int]] = {}
    for index, pair in enumerate(zip(run_ids, keys)):
        group = groups.get(pair)
        if group is None:
            groups[pair] = [index]
        else:
            group.append(index)
    if len(groups) * _GROUP_POINTS > n:
        return None
    out: list[Record] = []
    for (run_id, key), indices in groups.items():
        if len(indices) == 1:
            out.append(records[indices[0]])
        else:
            pick = itemgetter(*indices)
            out.append((METRIC_SERIES, run_id, key, pick(values), pick(timestamps), pick(steps)))
    return out


# metric_series gives up on a chunk once more than this many of its records travel plain and they
# are more than half of what it has looked at.
_MAX_PLAIN = 64
# _grouped looks at this many records before grouping a whole chunk, and groups only when the
# files hold at least this many points each on average. 1,024, not 256: 100 keys logged in random
# order fill 256 records with ~92 files and were never grouped, however many points each had
# (a look at 1,024 records costs ~50 us, under 4 ns a record of a 10,000-record chunk).
_GROUP_SAMPLE = 1024
_GROUP_POINTS = 4


def _cycle_at(run_ids: tuple[Any, ...], keys: tuple[Any, ...], start: int, hopeless: set[Any]) -> tuple[int, int]:
    """(end, period) of the longest stretch from ``start`` that repeats its first ``period`` pairs.

    The period is where the first key comes again. If the keys repeat but their runs do not,
    several runs are logged in turn, each the same keys (a sweep in one process), and the period
    is where the first (run, key) pair comes again (``_pair_period``). That search is made once
    per key and chunk (``hopeless`` holds the keys it failed for): a key logged in turn by many
    runs among other keys would otherwise cost a search at each of its records.
    """
    try:
        period = keys.index(keys[start], start + 1) - start
    except ValueError:
        period = len(keys) - start
    found = _stretch(run_ids, keys, start, period)
    if found is not None:
        return found
    key = keys[start]
    if key not in hopeless:
        longer = _pair_period(run_ids, keys, start)
        if longer is not None:
            end, cycle = _stretch(run_ids, keys, start, longer) or (start + longer, longer)
            if end - start >= 2 * cycle:
                return end, cycle
        hopeless.add(key)
    # Another run's points in the same key order: the shortest safe stretch is one period.
    return start + period, period


def _stretch(run_ids: tuple[Any, ...], keys: tuple[Any, ...], start: int, period: int) -> tuple[int, int] | None:
    """(end, period) of the stretch from ``start`` repeating its first ``period`` records; (start + 1, 1)
    when the pairs of one period are not distinct; None when the keys repeat but the runs do not.

    The end is found by galloping, then binary search, on slice comparisons (C): a stretch of L
    records costs O(L log L) element comparisons in C, not one Python step per record.
    """
    n = len(keys)
    first = start + period
    if period > 2:
        # Quick refusal before building a set of a long period (an eval key whose next
        # occurrence is a thousand records on): the next key comes again inside it.
        try:
            keys.index(keys[start + 1], start + 2, first)
            if run_ids[start + 1 : first].count(run_ids[start + 1]) == first - start - 1:
                return start + 1, 1
        except ValueError:
            pass
    if len(set(zip(run_ids[start:first], keys[start:first]))) != period:
        return start + 1, 1

    def repeats(low: int, high: int) -> bool:
        # Records [first + low, first + high) repeat those one period earlier (keys first: runs
        # differ far less often, and are checked once for the whole stretch below).
        return keys[first + low : first + high] == keys[start + low : start + high]

    # The stretch [start, first + m) repeats when its tail matches itself shifted by one period.
    # Gallop over ever longer runs of matching records, comparing only the new ones, then halve
    # the last step: about 2 comparisons a record, all in C.
    rest = n - first
    low, step = 0, period
    if start == 0 and repeats(0, rest):
        low = rest  # the whole chunk is one cycle, as a training loop's usually is: one comparison
    while low < rest and repeats(low, min(low + step, rest)):
        low = min(low + step, rest)
        step *= 2
    high = min(low + step, rest) - 1 if low < rest else low
    while low < high:
        mid = (low + high + 1) // 2
        if repeats(low, mid):
            low = mid
        else:
            high = mid - 1
    if run_ids[first : first + low] != run_ids[start : start + low]:
        return None
    return first + low, period


def _pair_period(run_ids: tuple[Any, ...], keys: tuple[Any, ...], start: int) -> int | None:
    """Records from ``start`` until its (run, key) pair comes again; None if it does not within
    _MAX_PROBES occurrences of its key (each probe one index() in C)."""
    key, run = keys[start], run_ids[start]
    position = start
    for _ in range(_MAX_PROBES):
        try:
            position = keys.index(key, position + 1)
        except ValueError:
            return None
        if run_ids[position] == run:
            return position - start
    return None


# The most runs _pair_period looks through for the first pair of a cycle: a sweep of up to this
# many runs in one process, logging the same keys in turn, still travels as series.
_MAX_PROBES = 1024
