"""The ``./mlruns`` store: MLflow's FileStore format, written and read byte for byte.

The store knows plain values and files only: it imports the standard library, PyYAML and
``trackd.errors``, never the protocol, the client or the daemon.
"""

from __future__ import annotations

import importlib as _importlib
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from ._entities import (
    LIFECYCLE_ACTIVE,
    LIFECYCLE_DELETED,
    Experiment,
    FileInfo,
    Metric,
    PagedList,
    Param,
    Run,
    RunData,
    RunInfo,
    RunStatus,
    RunTag,
    ViewType,
)
from ._layout import DEFAULT_EXPERIMENT_ID, DEFAULT_EXPERIMENT_NAME
from ._reader import StoreReader
from ._validation import (
    MAX_KEY_LENGTH,
    MAX_PARAM_VALUE_LENGTH,
    MAX_TAG_VALUE_LENGTH,
    SEARCH_MAX_RESULTS_DEFAULT,
    SEARCH_MAX_RESULTS_THRESHOLD,
    check_new_experiment,
    mapping_items,
    page_of,
    page_offset,
    page_token,
    require_utf8,
    validate_artifact_path,
    validate_artifact_text,
    validate_experiment_id,
    validate_experiment_name,
    validate_key,
    validate_max_results,
    validate_metric_value,
    validate_param_value,
    validate_new_run_id,
    validate_run_id,
    validate_written_run_id,
    validate_run_status,
    validate_run_time,
    validate_step,
    validate_store_root,
    check_artifact_root,
    validate_tag_value,
    validate_timestamp,
    validate_view_type,
    truncated_value,
)

if _TYPE_CHECKING:
    from ._artifact_copies import ArtifactCopy
    from ._journal import JournalUnreadable, WriteJournal
    from ._metric_files import MetricFileCache
    from ._write_items import (
        ArtifactWrite,
        MetricAppend,
        NewRun,
        ParamWrite,
        RunCounts,
        TagWrite,
        Termination,
        WriteBatch,
        WriteFailure,
    )
    from ._writer import DEFAULT_MAX_OPEN_FILES, StoreWriter

# The writer, the journal and the items they write are the daemon's; a training process imports
# the store for its validators, entities and reader only, so they load on first use (PEP 562).
_LAZY = {
    "ArtifactCopy": "_artifact_copies",
    "StoreWriter": "_writer",
    "DEFAULT_MAX_OPEN_FILES": "_writer",
    "WriteJournal": "_journal",
    "JournalUnreadable": "_journal",
    "MetricFileCache": "_metric_files",
    **dict.fromkeys(
        (
            "ArtifactWrite", "MetricAppend", "NewRun", "ParamWrite", "RunCounts", "TagWrite", "Termination", "WriteBatch",
            "WriteFailure",
        ),
        "_write_items",
    ),
}


def __getattr__(name: str) -> _Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(_importlib.import_module(f"{__name__}.{module}"), name)

__all__ = [
    "DEFAULT_EXPERIMENT_ID",
    "DEFAULT_EXPERIMENT_NAME",
    "DEFAULT_MAX_OPEN_FILES",
    "LIFECYCLE_ACTIVE",
    "LIFECYCLE_DELETED",
    "MAX_KEY_LENGTH",
    "MAX_PARAM_VALUE_LENGTH",
    "MAX_TAG_VALUE_LENGTH",
    "SEARCH_MAX_RESULTS_DEFAULT",
    "SEARCH_MAX_RESULTS_THRESHOLD",
    "ArtifactCopy",
    "ArtifactWrite",
    "Experiment",
    "FileInfo",
    "JournalUnreadable",
    "Metric",
    "MetricAppend",
    "MetricFileCache",
    "NewRun",
    "Param",
    "ParamWrite",
    "Run",
    "RunCounts",
    "RunData",
    "RunInfo",
    "RunStatus",
    "RunTag",
    "StoreReader",
    "StoreWriter",
    "TagWrite",
    "Termination",
    "ViewType",
    "WriteBatch",
    "WriteFailure",
    "WriteJournal",
    "check_new_experiment",
    "mapping_items",
    "require_utf8",
    "validate_artifact_path",
    "validate_artifact_text",
    "validate_experiment_id",
    "validate_experiment_name",
    "validate_key",
    "validate_max_results",
    "page_of",
    "page_offset",
    "page_token",
    "PagedList",
    "validate_metric_value",
    "validate_param_value",
    "validate_new_run_id",
    "validate_run_id",
    "validate_written_run_id",
    "validate_run_status",
    "validate_run_time",
    "validate_step",
    "validate_store_root",
    "check_artifact_root",
    "validate_tag_value",
    "validate_timestamp",
    "validate_view_type",
    "truncated_value",
]
