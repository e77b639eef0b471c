"""MLFLOW_EXPERIMENT_NAME naming an experiment whose id is not MLFLOW_EXPERIMENT_ID is refused, as MLflow refuses it.

A migration reviewer's job had both set and disagreeing: MLflow raises at start_run, trackd put the
run in the name's experiment without a word. Real child processes against a real daemon.
"""

from __future__ import annotations

import json
from pathlib import Path

from fluent_helpers import fluent_env, mlflow_reader, run_child
from helpers import DaemonProcess

START = """
import json, trackd
try:
    with trackd.start_run() as run:
        pass
    print(json.dumps({"experiment_id": run.info.experiment_id}))
except trackd.MlflowException as exc:
    print(json.dumps({"error": str(exc)}))
"""


def test_a_name_and_an_id_that_disagree_are_refused_and_agreeing_ones_used(daemon: DaemonProcess, store: Path) -> None:
    made = run_child("import trackd; print(trackd.Client().create_experiment('sweep'))", fluent_env(daemon, store))
    assert made.returncode == 0, made.stderr
    sweep = made.stdout.split()[-1]
    disagree = run_child(START, fluent_env(daemon, store, MLFLOW_EXPERIMENT_NAME="sweep", MLFLOW_EXPERIMENT_ID="0"))
    assert json.loads(disagree.stdout.splitlines()[-1]) == {"error": (
        "The provided MLFLOW_EXPERIMENT_ID environment variable value `0` does not match the experiment id "
        f"`{sweep}` for experiment name `sweep`"
    )}, disagree.stderr
    agree = run_child(START, fluent_env(daemon, store, MLFLOW_EXPERIMENT_NAME="sweep", MLFLOW_EXPERIMENT_ID=sweep))
    assert json.loads(agree.stdout.splitlines()[-1]) == {"experiment_id": sweep}, agree.stderr
    # A name not in the store yet is made, whatever the id says (as MLflow makes it).
    new = run_child(START, fluent_env(daemon, store, MLFLOW_EXPERIMENT_NAME="fresh", MLFLOW_EXPERIMENT_ID="0"))
    fresh = mlflow_reader(store).get_experiment_by_name("fresh")
    assert fresh is not None and json.loads(new.stdout.splitlines()[-1]) == {"experiment_id": fresh.experiment_id}, new.stderr
