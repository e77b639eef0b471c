"""A name of the ``mlflow`` module that trackd leaves out says what to use instead.

A script ported with ``import trackd as mlflow`` that called ``mlflow.pytorch.log_model(...)``,
``mlflow.sklearn.autolog()``, ``mlflow.trace`` or ``mlflow.search_registered_models()`` got a bare
"module 'trackd' has no attribute 'pytorch'", where ``mlflow.autolog`` and ``mlflow.log_model`` said
what to do. Every public name of the installed MLflow (its ``__all__`` and its lazily loaded
framework modules) is either trackd's or gets advice.
"""

from __future__ import annotations

import pytest
import mlflow
from packaging.version import Version

import trackd
from trackd._mlflow_gaps import ADVISED_MLFLOW


def _mlflow_names() -> list[str]:
    # The framework and GenAI modules (mlflow.pytorch, mlflow.openai...) are LazyLoader attributes,
    # not in __all__; their type is looked at, which imports nothing.
    modules = [name for name, value in vars(mlflow).items() if type(value).__name__ == "LazyLoader"]
    return sorted(set(mlflow.__all__) | set(modules))


def _message(name: str) -> str:
    with pytest.raises(AttributeError) as raised:
        getattr(trackd, name)
    return str(raised.value)


def test_every_mlflow_name_trackd_lacks_gets_advice() -> None:
    lacking = [name for name in _mlflow_names() if not hasattr(trackd, name)]
    assert "pytorch" in lacking and "trace" in lacking and "search_registered_models" in lacking
    plain = [name for name in lacking if _message(name).endswith(f"no attribute {name!r}")]
    if plain and Version(mlflow.__version__) > Version(ADVISED_MLFLOW):
        # The test extra takes any MLflow 3: one that adds names must not turn CI red; the lists in
        # _mlflow_gaps.py are brought up to date by hand.
        pytest.xfail(f"MLflow {mlflow.__version__} has names newer than {ADVISED_MLFLOW} trackd gives no advice for: {plain}")
    assert plain == []


@pytest.mark.parametrize("name", ["pytorch", "sklearn", "xgboost", "openai"])
def test_a_framework_module_names_itself_and_what_to_log_instead(name: str) -> None:
    message = _message(name)
    assert message.startswith(f"module 'trackd' has no attribute {name!r}: mlflow.{name} ")
    assert "trackd.log_artifact()" in message and f"use mlflow.{name} on the same ./mlruns" in message


def test_a_ported_flavor_call_fails_at_once_with_the_advice() -> None:
    # As it is written in a training script: the error comes at the attribute, before any call.
    with pytest.raises(AttributeError, match=r"mlflow\.pytorch \(its log_model, autolog or tracing\)"):
        trackd.pytorch.log_model(object(), "model")


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("trace", "tracing, prompts, assessments and GenAI evaluation are MLflow's entities"),
        ("search_registered_models", "trackd has no model registry"),
        ("get_logged_model", "models and datasets are MLflow's entities"),
        ("run", "MLflow Projects are not part of trackd"),
        ("list_workspaces", "a ./mlruns store has none"),
        ("flush_artifact_async_logging", "use trackd.flush()"),
    ],
)
def test_each_kind_of_name_gets_its_own_advice(name: str, words: str) -> None:
    assert words in _message(name)


def test_the_names_the_migration_review_met_say_what_to_use() -> None:
    # `from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME` and `mlflow.tracking.fluent` in ported code.
    from mlflow.utils import mlflow_tags

    assert "'mlflow.runName', 'mlflow.parentRunId'" in _message("utils")
    assert (mlflow_tags.MLFLOW_RUN_NAME, mlflow_tags.MLFLOW_PARENT_RUN_ID) == ("mlflow.runName", "mlflow.parentRunId")
    with pytest.raises(AttributeError, match=r"no attribute 'fluent': trackd's fluent functions are the trackd module's own"):
        trackd.tracking.fluent  # noqa: B018
