"""MLflow's ``mlflow.config``, for code ported with ``import trackd as mlflow``.

``mlflow.config.enable_async_logging()``, which MLflow's docs give for high-frequency logging, was
an AttributeError at a ported script's first line. trackd's logging calls are always asynchronous,
so it has nothing to turn on; the tracking-URI functions are trackd's own. trackd collects no
system metrics, and its system-metrics switches do as ``start_run(log_system_metrics=True)`` does:
the script goes on, and one ``trackd:`` line says none are collected. mlflow.config's other names
(the model registry's URI) raise AttributeError saying what to use instead. Loaded on first access
(``trackd.config``), not by ``import trackd``.
"""

from __future__ import annotations

import threading

from ._lazy import lazy_attributes as _lazy_attributes
from .client import get_tracking_uri, is_tracking_uri_set, set_tracking_uri

# The lines this process said ("async", "system metrics"): each once, whichever call asked first;
# a setup block calling three of the switches says it once.
_said: set[str] = set()
_said_lock = threading.Lock()


def enable_async_logging(enable: bool = True) -> None:
    """As MLflow's, for ``enable=True``: trackd's logging calls are asynchronous already.

    ``False`` cannot make them synchronous (MLflow's ``False`` makes each call wait for its write);
    one line says so and what waits: a call's ``synchronous=True``, or ``trackd.flush()``.
    """
    if not enable:
        _say_once(
            "async",
            "enable_async_logging(False): trackd's logging calls stay asynchronous (they return once the value is "
            "buffered); pass synchronous=True to a call, or call trackd.flush(), to wait until it is in the store.",
        )


def enable_system_metrics_logging() -> None:
    """Say, in one line, that trackd collects no system metrics (MLflow's logs CPU, memory and GPU
    use as ``system/*`` metrics of every run started after it)."""
    _say_no_system_metrics("enable_system_metrics_logging()", "runs start without them")


def disable_system_metrics_logging() -> None:
    """Nothing to do: trackd collects no system metrics."""


def set_system_metrics_sampling_interval(interval: float | None) -> None:
    """Say, in one line, that trackd collects no system metrics to sample."""
    _say_no_system_metrics(f"set_system_metrics_sampling_interval({interval!r})", "the setting changes nothing")


def set_system_metrics_samples_before_logging(samples: int | None) -> None:
    """Say, in one line, that trackd collects no system metrics to log."""
    _say_no_system_metrics(f"set_system_metrics_samples_before_logging({samples!r})", "the setting changes nothing")


def set_system_metrics_node_id(node_id: str | None) -> None:
    """Say, in one line, that trackd collects no system metrics to name a node in."""
    _say_no_system_metrics(f"set_system_metrics_node_id({node_id!r})", "the setting changes nothing")


def _say_no_system_metrics(call: str, outcome: str) -> None:
    from .client._run_checks import warn_no_system_metrics

    if _first("system metrics"):
        warn_no_system_metrics(call, outcome)


def _say_once(key: str, message: str) -> None:
    from .client._outbox import warn

    if _first(key):
        warn(message)


def _first(key: str) -> bool:
    with _said_lock:
        first = key not in _said
        _said.add(key)
    return first


__getattr__, __dir__ = _lazy_attributes(__name__, {}, hints="trackd._mlflow_gaps:CONFIG_HINTS")

__all__ = [
    "disable_system_metrics_logging",
    "enable_async_logging",
    "enable_system_metrics_logging",
    "get_tracking_uri",
    "is_tracking_uri_set",
    "set_system_metrics_node_id",
    "set_system_metrics_samples_before_logging",
    "set_system_metrics_sampling_interval",
    "set_tracking_uri",
]
