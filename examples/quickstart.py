"""MLflow's quickstart, written with trackd.

The MLflow original (``from mlflow import log_metric, log_param, log_artifacts``) has no
``start_run``: the first log call starts a run and interpreter exit ends it FINISHED. trackd does
the same, so this file differs from MLflow's only in its import. Run it from the repository root
(``.venv/bin/python examples/quickstart.py``); the run lands in ./mlruns.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from random import randint, random

import trackd
from trackd import log_artifacts, log_metric, log_param


def main() -> None:
    log_param("config_value", randint(0, 100))

    # Three values of one metric; each call returns once the value is buffered.
    log_metric("foo", random())
    log_metric("foo", random() + 1)
    log_metric("foo", random() + 2)

    with tempfile.TemporaryDirectory(prefix="trackd-quickstart-") as outputs:
        Path(outputs, "test.txt").write_text("hello world!\n")
        Path(outputs, "config.json").write_text('{"lr": 0.01, "epochs": 3}\n')
        # Files up to 8 MiB are read now and travel with the event, so the directory may be
        # deleted as soon as log_artifacts returns.
        log_artifacts(outputs)

    run = trackd.active_run()
    assert run is not None
    print(run.info.run_id)
    # Interpreter exit ends the run FINISHED and waits (at most TRACKD_EXIT_TIMEOUT seconds)
    # until everything above is in the store.


if __name__ == "__main__":
    main()
