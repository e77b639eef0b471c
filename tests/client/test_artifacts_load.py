"""trackd.artifacts.load_text and load_dict read an artifact as MLflow's do.

A ported evaluation script called mlflow.artifacts.load_dict on its run's config and got an
AttributeError. In a child process logging through a real daemon, each is compared with MLflow's
own on the same store.
"""

from __future__ import annotations

from pathlib import Path

from fluent_helpers import fluent_env, quiet_result, run_child
from helpers import DaemonProcess

COMPARE = """
import json, os, mlflow, mlflow.artifacts, trackd, trackd.artifacts
with trackd.start_run() as run:
    trackd.log_dict({"lr": 0.1, "layers": [64, 32]}, "cfg/config.json")
    trackd.log_text("élan\\nsecond line\\n", "notes.txt")
    trackd.log_text("not json", "bad.json")
mlflow.set_tracking_uri(trackd.get_tracking_uri())
config, notes = f"runs:/{run.info.run_id}/cfg/config.json", f"runs:/{run.info.run_id}/notes.txt"
local = run.info.artifact_uri + "/notes.txt"  # a path, the tracking URI being one
errors = []
for load in (trackd.artifacts.load_dict, mlflow.artifacts.load_dict):
    try:
        load(f"runs:/{run.info.run_id}/bad.json")
    except (mlflow.exceptions.MlflowException, trackd.MlflowException) as exc:
        errors.append(str(exc))
print(json.dumps({
    "text": [trackd.artifacts.load_text(uri) == mlflow.artifacts.load_text(uri) for uri in (config, notes, local)],
    "notes": trackd.artifacts.load_text(notes),
    "dict": [trackd.artifacts.load_dict(config), mlflow.artifacts.load_dict(config)],
    "errors": errors,
}))
"""


def test_load_text_and_load_dict_read_what_mlflow_reads(daemon: DaemonProcess, store: Path) -> None:
    result = quiet_result(run_child(COMPARE, fluent_env(daemon, store)))
    assert result["text"] == [True, True, True]
    assert result["notes"] == "élan\nsecond line\n"
    assert result["dict"] == [{"lr": 0.1, "layers": [64, 32]}] * 2
    assert result["errors"] == ["Unable to form a JSON object from file content"] * 2
