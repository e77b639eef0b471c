"""MLflow's search grammar, parsed: a ``filter_string`` into clauses, an ``order_by`` item into a key.

What MLflow 3.17's FileStore accepts (``mlflow/utils/search_utils.py``: ``SearchUtils`` for runs,
``SearchExperimentsUtils`` for experiments), in its words, without its sqlparse: the tokens below
are sqlparse's (``sqlparse/keywords.py`` SQL_REGEX) for what a filter can hold, and the grouping
is what MLflow makes of sqlparse's. A filter is comparisons joined by ``AND`` (no ``OR``, no
parentheses):

    metrics.acc > 0.9 and params.lr = '0.01' and tags.`mlflow.runName` LIKE 'bert-%'
    attributes.status != 'FAILED' and run_id IN ('a1', 'b2') and params.seed IS NOT NULL

Every refusal is an InvalidArgument (``error_code`` INVALID_PARAMETER_VALUE, MLflow's), raised
before any run is read: MLflow checks a comparator only against a run, so it accepts
``metrics.acc == 1`` when no run is searched; here it is refused always. ``_search.py`` applies
what this module parses.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from ..errors import InvalidArgument

# Entity types (SearchUtils._IDENTIFIERS) and the other spellings MLflow takes for each.
METRIC = "metric"
PARAM = "parameter"
TAG = "tag"
ATTRIBUTE = "attribute"
DATASET = "dataset"
_ENTITY_TYPES = {
    METRIC: METRIC, "metrics": METRIC,
    PARAM: PARAM, "parameters": PARAM, "param": PARAM, "params": PARAM,
    TAG: TAG, "tags": TAG,
    ATTRIBUTE: ATTRIBUTE, "attr": ATTRIBUTE, "attributes": ATTRIBUTE, "run": ATTRIBUTE,
    DATASET: DATASET, "datasets": DATASET,
}
_RUN_ENTITY_NAMES = [METRIC, PARAM, TAG, ATTRIBUTE, DATASET]
# search_experiments takes fewer spellings (SearchExperimentsUtils._get_identifier).
_EXPERIMENT_ENTITY_TYPES = ("attribute", "tag", "tags")

NUMERIC_COMPARATORS = frozenset({">", ">=", "!=", "=", "<", "<="})
KEY_VALUE_COMPARATORS = frozenset({"!=", "=", "LIKE", "ILIKE", "IS NULL", "IS NOT NULL"})
STRING_ATTRIBUTE_COMPARATORS = frozenset({"!=", "=", "LIKE", "ILIKE", "IN", "NOT IN"})

# RunInfo's searchable attributes, and the other names MLflow takes for two of them.
_RUN_NUMERIC_ATTRIBUTES = frozenset({"start_time", "end_time", "created", "Created"})
RUN_SEARCH_ATTRIBUTES = frozenset(
    {"artifact_uri", "end_time", "run_id", "run_name", "start_time", "status", "user_id"}
    | {"created", "Created", "run name", "Run name", "Run Name"}
)
RUN_ORDER_ATTRIBUTES = frozenset(
    {"artifact_uri", "end_time", "run_id", "run_name", "start_time", "status", "user_id", "created", "Created"}
)
_RUN_ATTRIBUTE_ALIASES = {"created": "start_time", "Created": "start_time", "run name": "run_name",
                          "Run name": "run_name", "Run Name": "run_name"}
EXPERIMENT_ATTRIBUTES = frozenset({"name", "experiment_id", "creation_time", "last_update_time"})
_EXPERIMENT_NUMERIC_ATTRIBUTES = frozenset({"creation_time", "last_update_time"})


class Clause(NamedTuple):
    """One comparison of a filter: ``metrics.acc > 0.9`` is ("metric", "acc", ">", 0.9)."""

    type: str  # METRIC, PARAM, TAG or ATTRIBUTE
    key: str  # an attribute's alias already resolved ("created" is "start_time")
    comparator: str  # upper case, as MLflow compares ("like" is "LIKE")
    value: str | int | float | tuple[str, ...] | None  # None for IS NULL / IS NOT NULL


class OrderKey(NamedTuple):
    """One ``order_by`` item: ``metrics.acc DESC`` is ("metric", "acc", False)."""

    type: str
    key: str
    ascending: bool


# sqlparse's tokens for what a filter holds, in its order (the first that matches wins), and
# with its flags (re.IGNORECASE | re.UNICODE): a number is not followed by a letter ("1abc" is
# a name), and "CASE", "IN", "VALUES", "USING", "FROM" and "AS" are keywords even after a dot
# (MLflow refuses params.from = 'x': quote such a key, params.`from`).
_TOKENS = re.compile(
    r"""(?P<ws>\s+)
    |(?P<backtick>`(?:``|[^`])*`)
    |(?P<reserved>(?:CASE|IN|VALUES|USING|FROM|AS)\b)
    |(?P<prefix>[A-ZÀ-Ü]\w*(?=\s*\.(?!\d)))
    |(?P<float>-?\d+(?:\.\d+)?E-?\d+|(?![_A-ZÀ-Ü])-?(?:\d+\.\d*|\.\d+)(?![_A-ZÀ-Ü]))
    |(?P<int>(?![_A-ZÀ-Ü])-?\d+(?![_A-ZÀ-Ü]))
    |(?P<string>'(?:''|\\'|[^'])*')
    |(?P<symbol>"(?:""|\\"|[^"])*"|""|".*?[^\\]")
    |(?P<notnull>NOT\s+NULL\b)
    |(?P<order>(?:ASC|DESC)(?:\s+NULLS\s+(?:FIRST|LAST))?\b)
    |(?P<like>(?:NOT\s+)?(?:LIKE|ILIKE|RLIKE)\b|(?:NOT\s+)?REGEXP(?:\s+BINARY)?\b)
    |(?P<word>\w[$#\w]*)
    |(?P<punct>[;:()\[\],.])
    |(?P<compare>[<>=~!]+)
    |(?P<other>.)""",
    re.IGNORECASE | re.UNICODE | re.VERBOSE | re.DOTALL,
)
# Words that are never (part of) a name: sqlparse's keywords a filter uses.
_KEYWORDS = frozenset({"AND", "OR", "NOT", "IS", "NULL", "IN"})
_NAME_PARTS = ("backtick", "prefix", "word", "symbol")


class _Item(NamedTuple):
    """A token or a group of tokens: an identifier (``metrics.acc``), a parenthesis, a value."""

    kind: str  # "ident", "paren", "string", "int", "float", "compare", "keyword", "order", "other"
    text: str


def parse_run_filter(filter_string: str) -> list[Clause]:
    """The clauses of a search_runs filter (SearchUtils.parse_search_filter, then its checks)."""
    return [_run_clause(*comparison) for comparison in _comparisons(filter_string, quoted=True)]


def parse_experiment_filter(filter_string: str) -> list[Clause]:
    """The clauses of a search_experiments filter (SearchExperimentsUtils.parse_search_filter)."""
    return [_experiment_clause(*comparison) for comparison in _comparisons(filter_string, quoted=False)]


def parse_run_order_by(order_by: str) -> OrderKey:
    """An order_by item of search_runs (SearchUtils.parse_order_by_for_search_runs)."""
    name, ascending = _order_by_name(order_by)
    entity, key = _run_identifier(name, RUN_ORDER_ATTRIBUTES)
    return OrderKey(entity, _RUN_ATTRIBUTE_ALIASES.get(key, key) if entity == ATTRIBUTE else key, ascending)


def parse_experiment_order_by(order_by: str) -> OrderKey:
    """An order_by item of search_experiments: an attribute (SearchExperimentsUtils._get_sort_key)."""
    name, ascending = _order_by_name(order_by)
    entity, key = _experiment_identifier(name)
    if entity != ATTRIBUTE:
        raise InvalidArgument(f"Invalid order_by entity: {entity}")
    return OrderKey(entity, key, ascending)


# --- tokens and comparisons -------------------------------------------------------------------


def _items(text: str, *, order_by: bool = False) -> list[_Item]:
    """The filter's items, whitespace dropped: dotted names joined into one identifier, a
    parenthesis with what it holds into one item, as sqlparse groups them (an order_by item
    takes "AS" as a name: ``params.as DESC``)."""
    tokens = [(match.lastgroup or "other", match.group()) for match in _TOKENS.finditer(text)]
    if order_by:
        tokens = [("word", value) if kind == "reserved" and value.upper() == "AS" else (kind, value) for kind, value in tokens]
    items: list[_Item] = []
    i = 0
    while i < len(tokens):
        kind, value = tokens[i]
        if kind in _NAME_PARTS and not (kind == "word" and value.upper() in _KEYWORDS):
            # A name, then ".name" parts: "tags.mlflow.runName", spaces around a dot kept in the
            # name as sqlparse keeps them ("metrics. a" is metric " a").
            end = i + 1
            while True:
                dot = end + (end < len(tokens) and tokens[end][0] == "ws")
                part = dot + 1 + (dot + 1 < len(tokens) and tokens[dot + 1][0] == "ws")
                if part < len(tokens) and tokens[dot] == ("punct", ".") and tokens[part][0] in _NAME_PARTS + ("string",):
                    end = part + 1
                else:
                    break
            items.append(_Item("ident", "".join(value for _, value in tokens[i:end])))
            i = end
        elif kind == "punct" and value == "(":
            depth, end = 0, i
            while end < len(tokens):
                depth += {"(": 1, ")": -1}.get(tokens[end][1], 0) if tokens[end][0] == "punct" else 0
                end += 1
                if depth == 0:
                    break
            items.append(_Item("paren", "".join(value for _, value in tokens[i:end])))
            i = end
        else:
            if kind in ("word", "reserved", "notnull"):
                items.append(_Item("keyword", value))  # as written: an error names it so
            elif kind == "like":
                items.append(_Item("compare", value))
            elif kind != "ws":
                items.append(_Item(kind, value))
            i += 1
    return items


def _comparisons(filter_string: str, *, quoted: bool) -> list[tuple[_Item, str, _Item | None]]:
    """The filter's comparisons as (identifier, comparator, value): value None for IS [NOT] NULL.

    Anything that is neither a comparison nor AND is refused, named as MLflow names it
    (``quoted``: search_runs quotes each part, search_experiments does not).
    """
    if not isinstance(filter_string, str):
        raise InvalidArgument(f"Invalid filter {filter_string!r}: expected a str such as \"metrics.acc > 0.9\".")
    if filter_string and not filter_string.strip():
        # sqlparse finds no statement in it; MLflow's search only skips an empty filter_string.
        raise InvalidArgument(f"Invalid filter '{filter_string}'. Could not be parsed.")
    _, semicolon, rest = filter_string.partition(";")
    if semicolon and rest.strip():
        raise InvalidArgument(
            f"Search filter contained multiple expression {filter_string!r}. Provide AND-ed expression list."
        )
    items = _items(filter_string)
    comparisons: list[tuple[_Item, str, _Item | None]] = []
    invalid: list[str] = []
    i = 0
    while i < len(items):
        item = items[i]
        ahead = items[i + 1 : i + 4]
        kinds = [a.kind for a in ahead]
        texts = [" ".join(a.text.upper().split()) if a.kind == "keyword" else "" for a in ahead]
        if item.kind == "keyword" and item.text.upper() == "AND":
            i += 1
        elif kinds[:2] == ["compare", "compare"] or (kinds[:1] == ["compare"] and len(ahead) < 2):
            invalid.extend(a.text for a in items[i : i + 2])
            i += 2
        elif kinds[:1] == ["compare"] and ahead[1].kind != "keyword":
            if item.kind != "ident":
                raise InvalidArgument(f"Invalid comparison clause. Expected 'Identifier' found '{item.text}'")
            comparisons.append((item, ahead[0].text, ahead[1]))
            i += 3
        elif item.kind == "ident" and texts[:1] == ["IN"] and kinds[1:2] == ["paren"]:
            comparisons.append((item, "IN", ahead[1]))
            i += 3
        elif item.kind == "ident" and texts[:2] == ["NOT", "IN"] and kinds[2:3] == ["paren"]:
            comparisons.append((item, "NOT IN", ahead[2]))
            i += 4
        elif item.kind == "ident" and texts[:2] in (["IS", "NULL"], ["IS", "NOT NULL"]):
            comparisons.append((item, f"IS {texts[1]}", None))
            i += 3
        else:
            invalid.append(item.text)
            i += 1
    if invalid:
        named = ", ".join(f"'{text}'" if quoted else text for text in invalid)
        raise InvalidArgument(f"Invalid clause(s) in filter string: {named}")
    return comparisons


def _strip_quotes(value: str, *, expect_quoted: bool = False) -> str:
    """A quoted string's text (SearchUtils._strip_quotes): quotes off, nothing unescaped."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    if expect_quoted:
        raise InvalidArgument(
            f"Parameter value is either not quoted or unidentified quote types used for string value "
            f"{value}. Use either single or double quotes."
        )
    return value


def _trim_backticks(value: str) -> str:
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == "`" else value


def _run_identifier(identifier: str, attributes: frozenset[str]) -> tuple[str, str]:
    """(entity type, key) of ``metrics.acc``, ``tags.`a b```, ``status`` (SearchUtils._get_identifier)."""
    entity_type, dot, key = identifier.partition(".")
    if not dot:
        entity_type, key = ATTRIBUTE, identifier
    entity = _ENTITY_TYPES.get(_trim_backticks(entity_type))
    if entity is None:
        raise InvalidArgument(
            f"Invalid entity type '{_trim_backticks(entity_type)}'. Valid values are {_RUN_ENTITY_NAMES}"
        )
    key = _trim_backticks(_strip_quotes(key))
    if entity == ATTRIBUTE and key not in attributes:
        raise InvalidArgument(f"Invalid attribute key '{key}' specified. Valid keys are '{set(sorted(attributes))}'")
    if entity == DATASET:
        # MLflow's file store compares the run's inputs (mlflow.log_input): trackd reads no run inputs.
        raise InvalidArgument(
            f"Invalid identifier {identifier!r}: trackd's search does not read the datasets a run logged "
            f"with mlflow.log_input; expected metrics., params., tags. or attributes. (search the store with "
            f"mlflow.MlflowClient for datasets)."
        )
    return entity, key


def _experiment_identifier(identifier: str) -> tuple[str, str]:
    """(entity type, key) of ``name``, ``tags.team`` (SearchExperimentsUtils._get_identifier)."""
    entity_type, dot, key = identifier.partition(".")
    entity = ATTRIBUTE
    if dot:
        if entity_type not in _EXPERIMENT_ENTITY_TYPES:
            raise InvalidArgument(
                f"Invalid entity type '{entity_type}'. Valid entity types are {_EXPERIMENT_ENTITY_TYPES}"
            )
        entity = _ENTITY_TYPES[entity_type]
    else:
        key = identifier
    key = _trim_backticks(_strip_quotes(key))
    if entity == ATTRIBUTE and key not in EXPERIMENT_ATTRIBUTES:
        raise InvalidArgument(
            f"Invalid attribute key '{key}' specified. Valid keys are '{set(sorted(EXPERIMENT_ATTRIBUTES))}'"
        )
    return entity, key


def _string_value(entity: str, comparator: str, value: _Item) -> str:
    """A param's or tag's value: a quoted string (SearchUtils._get_value), for a comparator it takes."""
    if value.kind not in ("string", "ident"):
        raise InvalidArgument(f"Expected a quoted string value for {entity} (e.g. 'my-value'). Got value {value.text}")
    text = _strip_quotes(value.text, expect_quoted=True)
    _check_comparator(comparator, KEY_VALUE_COMPARATORS)
    return text


def _attribute_value(
    key: str, comparator: str, value: _Item, numeric: frozenset[str], lists: str
) -> str | int | float | tuple[str, ...]:
    """An attribute's value: a number for a time, a quoted string, or a list for ``lists``
    (run_id), for a comparator it takes."""
    parsed: str | int | float | tuple[str, ...]
    if key in numeric:
        if value.kind not in ("int", "float"):
            raise InvalidArgument(f"Expected numeric value type for numeric attribute: {key}. Found {value.text}")
        parsed = int(value.text) if value.kind == "int" else float(value.text)
    elif value.kind in ("string", "ident"):
        parsed = _strip_quotes(value.text, expect_quoted=True)
    elif value.kind == "paren":
        if key != lists:
            raise InvalidArgument(
                f"Only [{lists!r}] attributes support comparison with a list of quoted string values."
            )
        parsed = _string_list(value.text)
    else:
        raise InvalidArgument(f"Expected a quoted string value for attributes. Got value {value.text}")
    _check_comparator(comparator, NUMERIC_COMPARATORS if key in numeric else STRING_ATTRIBUTE_COMPARATORS)
    return parsed


def _string_list(text: str) -> tuple[str, ...]:
    """``('a', "b")`` as a tuple of str (SearchUtils._parse_list_from_sql_token)."""
    import ast  # only a search with IN loads it

    try:
        parsed = ast.literal_eval(text)
    except (SyntaxError, ValueError) as exc:
        raise InvalidArgument(
            "While parsing a list in the query, expected a non-empty list of string values, but got ill-formed list."
        ) from exc
    values = parsed if isinstance(parsed, tuple) else (parsed,)
    if not values:
        raise InvalidArgument(
            "While parsing a list in the query, expected a non-empty list of string values, but got empty list"
        )
    if not all(isinstance(value, str) for value in values):
        raise InvalidArgument(
            "While parsing a list in the query, expected string value, punctuation, or whitespace, but got "
            f"different type in list: {values}"
        )
    return values


def _check_comparator(comparator: str, allowed: frozenset[str]) -> None:
    if comparator not in allowed:
        raise InvalidArgument(f"Invalid comparator '{comparator}' not one of '{set(sorted(allowed))}'")


def _run_clause(identifier: _Item, comparator: str, value: _Item | None) -> Clause:
    """A search_runs comparison checked as SearchUtils._get_comparison and _does_run_match_clause do."""
    entity, key = _run_identifier(identifier.text, RUN_SEARCH_ATTRIBUTES)
    comparator = comparator.upper()
    if value is None:
        if entity not in (TAG, PARAM):
            raise InvalidArgument(
                f"IS NULL / IS NOT NULL is only supported for tags and params, not for '{entity}' '{key}'"
            )
        return Clause(entity, key, comparator, None)
    if entity == METRIC:
        if value.kind not in ("int", "float"):
            raise InvalidArgument(f"Expected numeric value type for metric. Found {value.text}")
        _check_comparator(comparator, NUMERIC_COMPARATORS)
        return Clause(entity, key, comparator, float(value.text))
    if entity in (PARAM, TAG):
        return Clause(entity, key, comparator, _string_value(entity, comparator, value))
    parsed = _attribute_value(key, comparator, value, _RUN_NUMERIC_ATTRIBUTES, "run_id")
    return Clause(entity, _RUN_ATTRIBUTE_ALIASES.get(key, key), comparator, parsed)


def _experiment_clause(identifier: _Item, comparator: str, value: _Item | None) -> Clause:
    """A search_experiments comparison, as SearchExperimentsUtils checks it."""
    entity, key = _experiment_identifier(identifier.text)
    comparator = comparator.upper()
    if value is None:
        if entity != TAG:
            raise InvalidArgument(f"IS NULL / IS NOT NULL is only supported for tags, not for attribute '{key}'")
        return Clause(entity, key, comparator, None)
    if entity == TAG:
        return Clause(entity, key, comparator, _string_value(entity, comparator, value))
    parsed_value = _attribute_value(key, comparator, value, _EXPERIMENT_NUMERIC_ATTRIBUTES, "experiment_id")
    if isinstance(parsed_value, int):
        parsed_value = float(parsed_value)  # MLflow compares an experiment's times with float(value)
    return Clause(entity, key, comparator, parsed_value)


# --- order_by ---------------------------------------------------------------------------------


def _order_by_name(order_by: object) -> tuple[str, bool]:
    """(identifier, ascending) of ``metrics.acc DESC`` (SearchUtils._parse_order_by_string):
    one identifier, then ASC or DESC (any case; ASC when left out)."""
    if not isinstance(order_by, str):
        raise InvalidArgument(f"Invalid order_by clause {order_by!r}: expected a str such as 'metrics.acc DESC'.")
    items = _items(order_by, order_by=True)
    if order_by[:1].isspace() or order_by[-1:].isspace() or not items or items[0].kind != "ident" or len(items) > 2 or (
        len(items) == 2 and items[1].kind not in ("keyword", "order", "ident")
    ):
        raise InvalidArgument(f"Invalid order_by clause '{order_by}'. Could not be parsed.")
    import shlex  # only a search with order_by loads it

    try:
        words = shlex.split(order_by.replace("`", '"'))
    except ValueError as exc:
        raise InvalidArgument(f"Invalid order_by clause '{order_by}'. Could not be parsed.") from exc
    if len(words) > 2:
        raise InvalidArgument(f"Invalid order_by clause '{order_by}'. Could not be parsed.")
    if len(words) == 2 and words[1].lower() not in ("asc", "desc"):
        raise InvalidArgument(f"Invalid ordering key in order_by clause '{order_by}'.")
    return words[0].strip(), len(words) == 1 or words[1].lower() == "asc"
