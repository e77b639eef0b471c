"""trackd: MLflow's logging API at a microsecond a call, written to ./mlruns by a local daemon.

    import trackd
    with trackd.start_run():
        trackd.log_param("lr", 0.01)
        for step in range(1000):
            trackd.log_metric("loss", 1 / (step + 1), step=step)
"""

from __future__ import annotations

__version__ = "0.1.0"

from typing import TYPE_CHECKING as _TYPE_CHECKING

from ._lazy import lazy_attributes as _lazy_attributes
from .client import (
    ActiveRun,
    active_run,
    create_experiment,
    delete_tag,
    end_run,
    flush,
    flush_async_logging,
    get_artifact_uri,
    get_experiment,
    get_experiment_by_name,
    get_metric_history,
    get_run,
    get_tracking_uri,
    is_tracking_uri_set,
    last_active_run,
    log_artifact,
    log_artifacts,
    log_dict,
    log_figure,
    log_image,
    log_metric,
    log_metrics,
    log_param,
    log_params,
    log_table,
    log_text,
    search_runs,
    set_experiment,
    set_tag,
    set_tags,
    set_tracking_uri,
    start_run,
)
from .errors import (
    ArtifactNotFound,
    ClientClosedError,
    DaemonUnavailable,
    DeliveryError,
    FlushTimeout,
    InvalidArgument,
    MlflowException,
    ParamChangedError,
    TrackdError,
)

if _TYPE_CHECKING:
    from .client import Client, ClientConfig, FlushReport
    from .client import Client as MlflowClient
    from . import artifacts, config, entities, exceptions, tracking
    from .config import (
        disable_system_metrics_logging,
        enable_system_metrics_logging,
        set_system_metrics_node_id,
        set_system_metrics_samples_before_logging,
        set_system_metrics_sampling_interval,
    )
    from .store import Experiment, FileInfo, Metric, Run, RunData, RunInfo, RunStatus, ViewType

# The fluent functions are all ``import trackd`` loads. These names load the Client, the store's
# entities and what they import on first access (PEP 562); start_run() loads them too.
_LAZY = {
    "Client": "client",
    "ClientConfig": "client",
    "FlushReport": "client",
    # mlflow.MlflowClient: trackd's Client is its MlflowClient (the same methods, same arguments).
    "MlflowClient": "client:Client",
    # mlflow.exceptions, for `except mlflow.exceptions.MlflowException` (MlflowException is TrackdError).
    "exceptions": "exceptions",
    # mlflow.entities (Metric, Param, RunTag for log_batch; what reads return), as `mlflow.entities.Param(...)`.
    "entities": "entities",
    # mlflow.artifacts.download_artifacts(run_id=..., artifact_path=..., dst_path=...), for evaluation scripts.
    "artifacts": "artifacts",
    # mlflow.config.enable_async_logging() (MLflow's advice for high-frequency logging), the tracking
    # URI's functions and the system-metrics switches; mlflow.tracking.MlflowClient.
    "config": "config",
    "tracking": "tracking",
    # mlflow's system-metrics switches, as mlflow.config's: one line says trackd collects none, as
    # start_run(log_system_metrics=True) does.
    "enable_system_metrics_logging": "config",
    "disable_system_metrics_logging": "config",
    "set_system_metrics_sampling_interval": "config",
    "set_system_metrics_samples_before_logging": "config",
    "set_system_metrics_node_id": "config",
    "Experiment": "store",
    "FileInfo": "store",
    "Metric": "store",
    "Run": "store",
    "RunData": "store",
    "RunInfo": "store",
    "RunStatus": "store",
    "ViewType": "store",
}

# MLflow's fluent functions that trackd leaves out raise AttributeError saying what to use instead
# (the advice is in _mlflow_gaps.py, shared with Client's missing methods, loaded on a miss only).
__getattr__, __dir__ = _lazy_attributes(__name__, _LAZY, hints="trackd._mlflow_gaps:FLUENT_HINTS")

__all__ = [
    "ActiveRun",
    "ArtifactNotFound",
    "Client",
    "ClientClosedError",
    "ClientConfig",
    "DaemonUnavailable",
    "DeliveryError",
    "Experiment",
    "FileInfo",
    "FlushReport",
    "FlushTimeout",
    "InvalidArgument",
    "Metric",
    "MlflowClient",
    "MlflowException",
    "ParamChangedError",
    "Run",
    "RunData",
    "RunInfo",
    "RunStatus",
    "TrackdError",
    "ViewType",
    "__version__",
    "active_run",
    "artifacts",
    "config",
    "create_experiment",
    "delete_tag",
    "disable_system_metrics_logging",
    "enable_system_metrics_logging",
    "end_run",
    "entities",
    "exceptions",
    "flush",
    "flush_async_logging",
    "get_artifact_uri",
    "get_experiment",
    "get_experiment_by_name",
    "get_metric_history",
    "get_run",
    "get_tracking_uri",
    "is_tracking_uri_set",
    "last_active_run",
    "log_artifact",
    "log_artifacts",
    "log_dict",
    "log_figure",
    "log_image",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "log_table",
    "log_text",
    "search_runs",
    "set_experiment",
    "set_system_metrics_node_id",
    "set_system_metrics_samples_before_logging",
    "set_system_metrics_sampling_interval",
    "set_tag",
    "set_tags",
    "set_tracking_uri",
    "start_run",
    "tracking",
]
