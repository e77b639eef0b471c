"""trackd's search grammar parses a filter_string or an order_by item as MLflow's SearchUtils does,
for every combination of identifiers, comparators and values below: the same clauses, or a
refusal where MLflow refuses (trackd has no sqlparse; _search_parse.py follows its tokens)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from trackd import InvalidArgument
from trackd.store import _search_parse as grammar

pytest.importorskip("mlflow")
from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.utils import search_utils  # noqa: E402

# MLflow's helpers are untyped.
SearchUtils: Any = search_utils.SearchUtils
SearchExperimentsUtils: Any = search_utils.SearchExperimentsUtils

_ALIASES = {"created": "start_time", "Created": "start_time", "run name": "run_name", "Run name": "run_name", "Run Name": "run_name"}
IDENTIFIERS = [
    "metrics.acc", "params.lr", "tags.t", "attributes.status", "status", "run_id", "start_time", "created", "`Run Name`",
    '"run name"', "metrics.`a b`", 'metrics."a.b"', "tags.mlflow.runName", "metric.x", "attr.end_time", "run.user_id",
    "foo.x", "METRICS.a", "name", "experiment_id", "tag.k", "attribute.name", "attributes.name", "creation_time",
    "params.from", "metrics.1a", "metrics .a", "metrics. a", "params.a-b", "tags.'q'",
]
COMPARATORS = ["=", "!=", ">", ">=", "<=", "==", "LIKE", "ilike", "NOT LIKE", "IN", "NOT IN", "IS"]
VALUES = ["1", "-1", ".5", "1e3", "'x'", '"x"', "x", "'%a_'", "('a','b')", "(1)", "()", "NULL", "NOT NULL", "inf", "+1", "`x`"]
EXTRA = [
    " ", "and", "AND metrics.a > 1", "metrics.a > 1 and", "(metrics.a > 1)", "metrics.a>1", "metrics.a > 1;",
    "metrics.a > 1 ; params.b = 'x'", "1 = metrics.a", "params.a = 'x' params.b = 'y'", "metrics.a > 1 or params.b = 'x'",
    "metrics.a > 1 and and params.b = 'x'", "params.b = 'it''s'", "metrics.a = 1 and  params.b IS NOT NULL",
]


def _mlflow_run_clauses(filter_string: str) -> object:
    try:
        clauses = []
        for c in SearchUtils.parse_search_filter(filter_string):
            entity, key, comparator, value = c["type"], c["key"], c["comparator"].upper(), c["value"]
            if entity == "dataset":
                return "refused"  # trackd reads no run inputs
            key = _ALIASES.get(key, key) if entity == "attribute" else key
            # MLflow checks the comparator against each run; trackd at once.
            SearchUtils.is_metric(entity, comparator) or SearchUtils.is_param(entity, comparator) or SearchUtils.is_tag(
                entity, comparator
            ) or SearchUtils.is_string_attribute(entity, key, comparator) or SearchUtils.is_numeric_attribute(entity, key, comparator)
            clauses.append((entity, key, comparator, float(value) if entity == "metric" else value))
        return clauses
    except MlflowException:
        return "refused"


def _mlflow_experiment_clauses(filter_string: str) -> object:
    utils = SearchExperimentsUtils
    try:
        clauses = []
        for c in utils.parse_search_filter(filter_string):
            entity, key, comparator, value = c["type"], c["key"], c["comparator"].upper(), c["value"]
            utils.is_string_attribute(entity, key, comparator) or utils.is_numeric_attribute(entity, key, comparator) or utils.is_tag(
                entity, comparator
            )
            numeric = entity == "attribute" and key in utils.NUMERIC_ATTRIBUTES
            clauses.append((entity, key, comparator, float(value) if numeric else value))
        return clauses
    except MlflowException:
        return "refused"


def _ours(parse: object, text: str) -> object:
    try:
        return [tuple(clause) for clause in parse(text)]  # type: ignore[operator]
    except InvalidArgument:
        return "refused"


def test_filters_parse_as_mlflow_parses_them() -> None:
    filters = [" ".join(parts) for parts in itertools.product(IDENTIFIERS, COMPARATORS, VALUES)] + EXTRA
    filters += [f"{i} IS NULL" for i in IDENTIFIERS] + [f"{i} is not null" for i in IDENTIFIERS]
    differ = []
    for text in filters:
        for theirs, ours in (
            (_mlflow_run_clauses(text), _ours(grammar.parse_run_filter, text)),
            (_mlflow_experiment_clauses(text), _ours(grammar.parse_experiment_filter, text)),
        ):
            if theirs != ours:
                differ.append((text, theirs, ours))
    assert differ == []


def test_order_by_items_parse_as_mlflow_parses_them() -> None:
    differ = []
    for identifier, suffix in itertools.product(IDENTIFIERS, ["", " DESC", " asc", "  DESC", " DOWN", " DESC NULLS LAST", ", x", " "]):
        for text in (identifier + suffix, " " + identifier + suffix):
            try:
                entity, key, ascending = SearchUtils.parse_order_by_for_search_runs(text)
                theirs: object = "refused" if entity == "dataset" else (entity, _ALIASES.get(key, key) if entity == "attribute" else key, ascending)
            except MlflowException:
                theirs = "refused"
            try:
                entity, key, ascending = SearchExperimentsUtils.parse_order_by_for_search_experiments(text)
                theirs_experiment: object = (entity, key, ascending) if entity == "attribute" else "refused"
            except MlflowException:
                theirs_experiment = "refused"
            for expected, parse in ((theirs, grammar.parse_run_order_by), (theirs_experiment, grammar.parse_experiment_order_by)):
                try:
                    ours: object = tuple(parse(text))
                except InvalidArgument:
                    ours = "refused"
                if ours != expected:
                    differ.append((text, expected, ours))
    assert differ == []
