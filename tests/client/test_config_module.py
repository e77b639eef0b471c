"""``trackd.config`` and ``trackd.tracking``: MLflow's ``mlflow.config`` and ``mlflow.tracking`` for a ported script.

A review porting with ``import trackd as mlflow`` died at the first line:
``mlflow.config.enable_async_logging()`` (MLflow's advice for high-frequency logging) and
``mlflow.tracking.MlflowClient`` were "module 'trackd' has no attribute ...", and
``mlflow.set_system_metrics_sampling_interval`` a bare AttributeError.
"""

from __future__ import annotations

import inspect
import os
import re
import types
from collections.abc import Callable
from pathlib import Path

import pytest
from fluent_helpers import fluent_env, run_child
from helpers import DaemonProcess, run_python

import trackd

mlflow = pytest.importorskip("mlflow")
import mlflow.config  # noqa: E402
import mlflow.tracking  # noqa: E402

SYSTEM_METRICS = [
    "enable_system_metrics_logging", "disable_system_metrics_logging", "set_system_metrics_sampling_interval",
    "set_system_metrics_samples_before_logging", "set_system_metrics_node_id",
]


def _public(module: object) -> list[str]:
    return sorted(name for name in dir(module) if not name.startswith("_"))


def _parameters(function: Callable[..., object]) -> list[tuple[str, object]]:
    return [(p.name, p.default) for p in inspect.signature(function).parameters.values()]


def test_a_script_using_mlflow_config_and_tracking_logs_and_says_nothing(daemon: DaemonProcess, store: Path) -> None:
    result = run_child(
        """
        import trackd as mlflow
        mlflow.config.enable_async_logging()
        mlflow.config.enable_async_logging(True)
        mlflow.config.disable_system_metrics_logging()
        print(mlflow.config.is_tracking_uri_set(), mlflow.config.get_tracking_uri())
        with mlflow.start_run() as run:
            for step in range(100):
                mlflow.log_metric("loss", 1 / (step + 1), step=step)
        client = mlflow.tracking.MlflowClient()
        print(run.info.run_id, len(client.get_metric_history(run.info.run_id, "loss")))
        """,
        fluent_env(daemon, store),
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    uri_line, run_line = result.stdout.splitlines()
    assert uri_line == f"True {store}"
    run_id, points = run_line.split()
    assert points == "100"
    assert len(mlflow.MlflowClient(str(store)).get_metric_history(run_id, "loss")) == 100


def test_enable_async_logging_false_says_once_that_calls_stay_asynchronous(daemon: DaemonProcess, store: Path) -> None:
    result = run_child(
        """
        import trackd as mlflow
        mlflow.config.enable_async_logging(False)
        mlflow.config.enable_async_logging(False)
        with mlflow.start_run():
            mlflow.log_param("lr", 0.1, synchronous=True)
        """,
        fluent_env(daemon, store),
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "trackd: enable_async_logging(False): trackd's logging calls stay asynchronous (they return once the value is "
        "buffered); pass synchronous=True to a call, or call trackd.flush(), to wait until it is in the store.",
    ]
    [run] = mlflow.MlflowClient(str(store)).search_runs(["0"])
    assert run.data.params == {"lr": "0.1"}


def test_system_metrics_switches_say_once_that_trackd_collects_none(daemon: DaemonProcess, store: Path) -> None:
    # As start_run(log_system_metrics=True): the script goes on, and one line says so.
    result = run_child(
        """
        import trackd as mlflow
        mlflow.enable_system_metrics_logging()
        mlflow.set_system_metrics_sampling_interval(1)
        mlflow.config.set_system_metrics_samples_before_logging(5)
        mlflow.config.set_system_metrics_node_id("node-0")
        mlflow.config.disable_system_metrics_logging()
        with mlflow.start_run():
            mlflow.log_metric("loss", 0.5)
        """,
        fluent_env(daemon, store),
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "trackd: enable_system_metrics_logging(): trackd collects no system metrics; runs start without them (log them "
        "with trackd.log_metrics() from a thread of your own).",
    ]
    [run] = mlflow.MlflowClient(str(store)).search_runs(["0"])
    assert run.data.metrics == {"loss": 0.5}


def test_a_setting_alone_says_the_setting_changes_nothing(daemon: DaemonProcess, store: Path) -> None:
    result = run_child("import trackd as mlflow\nmlflow.config.set_system_metrics_sampling_interval(10)\n", fluent_env(daemon, store))
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith(
        "trackd: set_system_metrics_sampling_interval(10): trackd collects no system metrics; the setting changes nothing"
    ), result.stderr


def test_every_mlflow_config_name_is_trackds_or_says_what_to_use() -> None:
    names = _public(mlflow.config)
    assert "enable_async_logging" in names and "get_registry_uri" in names
    ours = [name for name in names if name in trackd.config.__all__]
    assert sorted(ours) == sorted(trackd.config.__all__)
    for name in ours:
        assert _parameters(getattr(trackd.config, name)) == _parameters(getattr(mlflow.config, name)), name
    for name in sorted(set(names) - set(ours)):
        with pytest.raises(AttributeError, match=f"^module 'trackd.config' has no attribute '{name}': .{{20}}"):
            getattr(trackd.config, name)


def test_every_mlflow_tracking_name_is_trackds_or_says_what_to_use() -> None:
    names = [name for name in mlflow.tracking.__all__ if not name.startswith("_")]
    assert trackd.tracking.MlflowClient is trackd.Client is trackd.MlflowClient
    for name in names:
        if name in trackd.tracking.__all__:
            if name != "MlflowClient":
                assert _parameters(getattr(trackd.tracking, name)) == _parameters(getattr(mlflow.tracking, name)), name
        else:
            with pytest.raises(AttributeError, match=f"^module 'trackd.tracking' has no attribute '{name}': .{{20}}"):
                getattr(trackd.tracking, name)
    assert sorted(trackd.tracking.__all__) == sorted(set(names) & set(trackd.tracking.__all__))


@pytest.mark.parametrize("name", ["get_tracking_uri", "set_tracking_uri", "is_tracking_uri_set"])
def test_the_tracking_uri_functions_are_trackds_own(name: str) -> None:
    assert getattr(trackd.config, name) is getattr(trackd.tracking, name) is getattr(trackd, name)


@pytest.mark.parametrize("name", SYSTEM_METRICS)
def test_mlflows_top_level_system_metrics_names_are_configs(name: str) -> None:
    # Their signatures are compared with mlflow's in test_client_vs_mlflow.py (FLUENT_FUNCTIONS).
    assert getattr(trackd, name) is getattr(trackd.config, name)


@pytest.mark.parametrize(
    ("module", "name"), [(trackd, "get_registry_uri"), (trackd, "set_registry_uri"), (trackd.config, "MLFLOW_ENABLE_ASYNC_LOGGING")]
)
def test_the_other_names_say_what_to_use(module: types.ModuleType, name: str) -> None:
    with pytest.raises(AttributeError) as missing:
        getattr(module, name)
    assert re.search(r"has no attribute '\w+': trackd", str(missing.value)), missing.value


def test_import_trackd_loads_neither_module_until_used() -> None:
    result = run_python(
        "import sys, trackd\n"
        "names = {'trackd.config', 'trackd.tracking'}\n"
        "print(sorted(names & set(sys.modules)))\n"
        "trackd.config.enable_async_logging, trackd.tracking.MlflowClient\n"
        "print(sorted(names & set(sys.modules)))\n",
        dict(os.environ),
    )
    assert result.stdout.splitlines() == ["[]", "['trackd.config', 'trackd.tracking']"], result.stderr


def test_import_trackd_tracking_and_from_trackd_config_import_work() -> None:
    result = run_python(
        "import trackd.tracking\n"
        "from trackd.config import enable_async_logging\n"
        "from trackd.tracking import MlflowClient\n"
        "enable_async_logging()\n"
        "print(MlflowClient is trackd.Client)\n",
        dict(os.environ),
    )
    assert result.stdout.strip() == "True", result.stderr
