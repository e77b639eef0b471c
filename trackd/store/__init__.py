"""The ``./mlruns`` store: MLflow's FileStore format, written and read byte for byte.

The store knows plain values and files only: it imports the standard library, PyYAML and
``trackd.errors``, never the protocol, the client or the daemon.
"""

from __future__ import annotations

from ._entities import (
    LIFECYCLE_ACTIVE,
    LIFECYCLE_DELETED,
    ArtifactWrite,
    Experiment,
    Metric,
    MetricAppend,
    NewRun,
    ParamWrite,
    Run,
    RunData,
    RunInfo,
    RunStatus,
    TagWrite,
    Termination,
    WriteBatch,
    WriteFailure,
)
from ._journal import WriteJournal
from ._layout import DEFAULT_EXPERIMENT_ID, DEFAULT_EXPERIMENT_NAME
from ._reader import StoreReader
from ._validation import (
    MAX_KEY_LENGTH,
    MAX_PARAM_VALUE_LENGTH,
    MAX_TAG_VALUE_LENGTH,
    validate_artifact_path,
    validate_experiment_id,
    validate_experiment_name,
    validate_key,
    validate_metric_value,
    validate_param_value,
    validate_run_id,
    validate_run_status,
    validate_step,
    validate_store_root,
    validate_tag_value,
    validate_timestamp,
)
from ._writer import DEFAULT_MAX_OPEN_FILES, StoreWriter

__all__ = [
    "DEFAULT_EXPERIMENT_ID",
    "DEFAULT_EXPERIMENT_NAME",
    "DEFAULT_MAX_OPEN_FILES",
    "LIFECYCLE_ACTIVE",
    "LIFECYCLE_DELETED",
    "MAX_KEY_LENGTH",
    "MAX_PARAM_VALUE_LENGTH",
    "MAX_TAG_VALUE_LENGTH",
    "ArtifactWrite",
    "Experiment",
    "Metric",
    "MetricAppend",
    "NewRun",
    "ParamWrite",
    "Run",
    "RunData",
    "RunInfo",
    "RunStatus",
    "StoreReader",
    "StoreWriter",
    "TagWrite",
    "Termination",
    "WriteBatch",
    "WriteFailure",
    "WriteJournal",
    "validate_artifact_path",
    "validate_experiment_id",
    "validate_experiment_name",
    "validate_key",
    "validate_metric_value",
    "validate_param_value",
    "validate_run_id",
    "validate_run_status",
    "validate_step",
    "validate_store_root",
    "validate_tag_value",
    "validate_timestamp",
]
