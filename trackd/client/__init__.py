"""The trackd client: MLflow's fluent API and ``Client``, delivering through a background sender."""

from __future__ import annotations

from typing import TYPE_CHECKING as _TYPE_CHECKING

from .._lazy import lazy_attributes as _lazy_attributes
from ._fluent import (
    ActiveRun,
    active_run,
    end_run,
    get_client,
    get_tracking_uri,
    log_metric,
    log_metrics,
    set_experiment,
    set_tracking_uri,
)
from ._fluent_passthrough import (
    create_experiment,
    delete_tag,
    flush,
    flush_async_logging,
    get_artifact_uri,
    get_experiment,
    get_experiment_by_name,
    get_metric_history,
    get_run,
    is_tracking_uri_set,
    last_active_run,
    log_artifact,
    log_artifacts,
    log_dict,
    log_figure,
    log_image,
    log_param,
    log_params,
    log_table,
    log_text,
    search_runs,
    set_tag,
    set_tags,
)
from ._lifecycle import ClientState
from ._run_start import start_run

if _TYPE_CHECKING:
    from ._client import Client
    from ._config import ClientConfig, resolve_tracking_uri
    from ._launcher import daemon_answers, spawn_daemon, wait_until_answering
    from ._outbox import FlushReport

# ``import trackd`` loads the fluent functions only. The Client and what delivers its events (the
# sender, the protocol, msgpack, the store) load when the first Client is made, or on first
# access to one of these names (PEP 562).
_LAZY = {
    "Client": "_client",
    "ClientConfig": "_config",
    "resolve_tracking_uri": "_config",
    "daemon_answers": "_launcher",
    "spawn_daemon": "_launcher",
    "wait_until_answering": "_launcher",
    "FlushReport": "_outbox",
}

__getattr__, __dir__ = _lazy_attributes(__name__, _LAZY)

__all__ = [
    "ActiveRun",
    "Client",
    "ClientConfig",
    "ClientState",
    "FlushReport",
    "active_run",
    "create_experiment",
    "daemon_answers",
    "delete_tag",
    "end_run",
    "flush",
    "flush_async_logging",
    "get_artifact_uri",
    "get_client",
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
    "resolve_tracking_uri",
    "search_runs",
    "set_experiment",
    "set_tag",
    "set_tags",
    "set_tracking_uri",
    "spawn_daemon",
    "start_run",
    "wait_until_answering",
]
