"""Values past MLflow's length limits: truncated with one warning line per call, as MLflow does.

MLflow 3 (``utils/validation.py:_validate_length_limit``) cuts a param value past 6000 characters
(``_validate_param``: log_param, log_params, log_batch) and a tag value past 8000 (``_validate_tag``:
log_batch only, so the fluent set_tags too; set_tag stores any length) when MLFLOW_TRUNCATE_LONG_VALUES
is true, its default, with a WARNING naming the value; when it is false, it raises. A script that
logs a long config string as a param ran under MLflow and stopped with an error under trackd.
"""

from __future__ import annotations

import os

from ..errors import InvalidArgument
from ..store import truncated_value

TRUNCATE_VARIABLE = "MLFLOW_TRUNCATE_LONG_VALUES"


def truncate_long_values() -> bool:
    """MLFLOW_TRUNCATE_LONG_VALUES as MLflow's boolean variables read it, at the call (only a value
    past a limit pays for it): unset means true; "true", "1", "false", "0" in any case; else an error."""
    text = os.environ.get(TRUNCATE_VARIABLE)
    if text is None:
        return True
    if text.lower() not in ("true", "false", "1", "0"):
        # MLflow raises ValueError here too ("... value must be one of ['true', 'false', '1', '0']").
        raise InvalidArgument(
            f"Invalid environment variable {TRUNCATE_VARIABLE}={text!r}: expected one of 'true', 'false', '1' "
            "or '0' (case-insensitive), as MLflow reads it."
        )
    return text.lower() in ("true", "1")


class Truncations:
    """The values one call truncated, said in one warning line when the call has checked them all."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: list[str] = []

    def fit(self, kind: str, key: str, value: str, limit: int) -> str:
        """``value``, cut to ``limit`` characters when it is longer and truncation is on (else that raises)."""
        if len(value) <= limit:
            return value
        fitted = truncated_value(kind, key, value, limit, truncate=truncate_long_values())
        self._items.append(f"{kind} {key!r} from {len(value)} to {limit} characters")
        return fitted

    def warn(self) -> None:
        """The one line for what this call truncated; nothing when it truncated nothing."""
        if self._items:
            from ._outbox import warn

            warn(
                f"truncated the value of {'; '.join(self._items)} (MLflow's length limit; MLflow truncates it too, "
                f"and raises instead when {TRUNCATE_VARIABLE}=false)."
            )
