"""set_experiment() with neither or both of its arguments raises an MlflowException, as MLflow's does.

A migration reviewer's script caught `mlflow.exceptions.MlflowException` around set_experiment, as
MLflow raises one there; trackd raised a bare ValueError, which went past it. Nothing is sent: the
arguments are checked before the client is made.
"""

from __future__ import annotations

import pytest

import trackd
from trackd.exceptions import MlflowException


@pytest.mark.parametrize("arguments", [{}, {"experiment_name": "a", "experiment_id": "1"}])
def test_set_experiment_with_neither_or_both_arguments_raises_an_mlflow_exception(arguments: dict[str, str]) -> None:
    with pytest.raises(MlflowException, match="takes exactly one of experiment_name and experiment_id") as raised:
        trackd.set_experiment(**arguments)
    assert isinstance(raised.value, ValueError)  # what it raised before, still caught as it was
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"
