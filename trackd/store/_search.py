"""MLflow's search, applied: which runs and experiments a filter keeps, in which order.

As MLflow 3.17's FileStore searches (``_search_runs``, ``search_experiments``): every run of the
experiments in the view is read, the filter keeps some (``SearchUtils.filter``), they are sorted
(``SearchUtils.sort``) and then cut into pages by offset, so a page token of a filtered, ordered
search asks for the next page of that same list. ``_search_parse.py`` parses the grammar.

Runs come in MLflow's order: start_time DESC, then run_id, and each ``order_by`` item (the
first decides, the next breaks its ties) sorts stably on top. A run without the key (no such
metric, param or tag; no end_time yet) sorts last either way, and a NaN metric just before
those (``SearchUtils._get_value_for_sort``). Experiments come in each order_by item's order,
ties broken by experiment_id (DESC, as MLflow's added tie-breaker compares it, as a str), or by
default creation_time DESC then experiment_id.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import InvalidArgument
from ._entities import Experiment, Run
from ._search_parse import (
    METRIC,
    PARAM,
    TAG,
    Clause,
    parse_experiment_filter,
    parse_experiment_order_by,
    parse_run_filter,
    parse_run_order_by,
)

_DEFAULT_EXPERIMENT_ORDER = ["creation_time DESC", "experiment_id ASC"]


def run_search(filter_string: object, order_by: object) -> Callable[[list[Run]], list[Run]]:
    """What search_runs does with the runs it read: filter, then sort. Checks both arguments now,
    before any run is read, so a bad filter raises even where no run is searched."""
    clauses = parse_run_filter(text) if (text := _filter_text(filter_string)) else []
    orders = [parse_run_order_by(item) for item in _order_by_items(order_by)]

    def search(runs: list[Run]) -> list[Run]:
        kept = [run for run in runs if all(_run_matches(run, clause) for clause in clauses)] if clauses else runs
        ordered = sorted(kept, key=lambda run: (-run.info.start_time, run.info.run_id))
        # Python's sort is stable: sorting by the last item first leaves the first one deciding.
        for entity, key, ascending in reversed(orders):
            ordered = sorted(ordered, key=lambda run: _run_sort_value(run, entity, key, ascending), reverse=not ascending)
        return ordered

    return search


def experiment_search(filter_string: object, order_by: object) -> Callable[[list[Experiment]], list[Experiment]]:
    """What search_experiments does with the experiments it read: filter, then sort."""
    clauses = parse_experiment_filter(text) if (text := _filter_text(filter_string)) else []
    items = _order_by_items(order_by) or _DEFAULT_EXPERIMENT_ORDER
    orders = [(key, ascending) for _, key, ascending in map(parse_experiment_order_by, items)]
    if not any(key == "experiment_id" for key, _ in orders):
        orders.append(("experiment_id", False))

    def search(experiments: list[Experiment]) -> list[Experiment]:
        kept = [e for e in experiments if all(_experiment_matches(e, clause) for clause in clauses)]
        return sorted(kept, key=lambda e: tuple(_NoneLast(getattr(e, key), ascending) for key, ascending in orders))

    return search


def _filter_text(filter_string: object) -> str:
    # MLflow filters only for a truthy filter_string: None and "" keep every run, "  " is refused.
    if filter_string is None:
        return ""
    if not isinstance(filter_string, str):
        raise InvalidArgument(f"Invalid filter_string {filter_string!r}: expected a str such as \"metrics.acc > 0.9\".")
    return filter_string


def _order_by_items(order_by: object) -> Sequence[str]:
    if order_by is None:
        return []
    if isinstance(order_by, str) or not isinstance(order_by, (list, tuple)):
        # MLflow would read a str's characters as items, each refused.
        raise InvalidArgument(f"Invalid order_by {order_by!r}: expected a list of str such as ['metrics.acc DESC'].")
    return order_by


# --- filter -----------------------------------------------------------------------------------

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "=": operator.eq,
    "!=": operator.ne,
    "<=": operator.le,
    "<": operator.lt,
    "LIKE": lambda value, pattern: _like_regex(pattern, 0).match(value) is not None,
    "ILIKE": lambda value, pattern: _like_regex(pattern, re.IGNORECASE).match(value) is not None,
    "IN": lambda value, values: value in values,
    "NOT IN": lambda value, values: value not in values,
}


def _like_regex(pattern: str, flags: int) -> re.Pattern[str]:
    """SQL LIKE as MLflow's _convert_like_pattern_to_regex: % any run, _ one character, anchored
    only at an end without %."""
    regex = re.escape(pattern).replace("%", ".*").replace("_", ".")
    if not pattern.startswith("%"):
        regex = "^" + regex
    if not pattern.endswith("%"):
        regex = regex + "$"
    return re.compile(regex, flags)


def _run_value(run: Run, entity: str, key: str) -> Any:
    """The run's metric (latest value), param, tag or attribute named ``key``; None if it has none."""
    if entity == METRIC:
        return run.data.metrics.get(key)
    if entity == PARAM:
        return run.data.params.get(key)
    if entity == TAG:
        return run.data.tags.get(key)
    return getattr(run.info, key)


def _run_matches(run: Run, clause: Clause) -> bool:
    """SearchUtils._does_run_match_clause: a run without the key matches nothing but IS NULL."""
    entity, key, comparator, value = clause
    lhs = _run_value(run, entity, key)
    if comparator == "IS NULL":
        return lhs is None
    if comparator == "IS NOT NULL":
        return lhs is not None
    return lhs is not None and _COMPARE[comparator](lhs, value)


def _experiment_matches(experiment: Experiment, clause: Clause) -> bool:
    """SearchExperimentsUtils._does_experiment_match_clause."""
    entity, key, comparator, value = clause
    if entity == TAG:
        if comparator in ("IS NULL", "IS NOT NULL"):
            return (key in experiment.tags) == (comparator == "IS NOT NULL")
        lhs = experiment.tags.get(key)
    else:
        # An experiment MLflow 1.x made has no creation_time: MLflow's comparison raised TypeError.
        lhs = getattr(experiment, key)
    return lhs is not None and _COMPARE[comparator](lhs, value)


# --- order ------------------------------------------------------------------------------------


def _run_sort_value(run: Run, entity: str, key: str, ascending: bool) -> tuple[bool, Any]:
    """SearchUtils._get_value_for_sort: a sort key that puts a missing value last and a NaN just
    before it, whichever the direction (the list is reversed for DESC)."""
    value = _run_value(run, entity, key)
    is_none = value is None
    is_nan = isinstance(value, float) and math.isnan(value)
    fill = math.inf if ascending else -math.inf
    if is_none:
        value = fill
    elif is_nan:
        value = -fill
    return (is_none or is_nan, value) if ascending else (not (is_none or is_nan), value)


class _NoneLast:
    """One order_by value of an experiment: None after every value, either direction
    (SearchExperimentsUtils._get_sort_key's _Sorter)."""

    __slots__ = ("ascending", "value")

    def __init__(self, value: Any, ascending: bool) -> None:
        self.value = value
        self.ascending = ascending

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _NoneLast) and other.value == self.value

    def __hash__(self) -> int:
        return hash(self.value)

    def __lt__(self, other: _NoneLast) -> bool:
        if self.value is None:
            return False
        if other.value is None:
            return True
        return bool(self.value < other.value if self.ascending else other.value < self.value)
