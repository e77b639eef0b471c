"""A param logged again with another value on a run this process reopens raises at the call, as in MLflow.

A requeued job resuming its ended run by id (``start_run(run_id=...)``) changed a param: trackd
accepted the call, the script went on and exited 0, and only the daemon's refusal on stderr said
so. MLflow raises ``Changing param values is not allowed`` at the ``log_param``. The same value
logged again is fine, in both. (A live run a rank attaches to is left to the daemon: its params are
being logged by others meanwhile, tests/test_refusal_named_once.py.)
"""

from __future__ import annotations

import json
from pathlib import Path

from fluent_helpers import fluent_env, run_child
from helpers import DaemonProcess, store_client

RESUME = """
import json, trackd
with trackd.start_run(run_id={run_id!r}):
    try:
        trackd.log_param("lr", 0.2)
    except trackd.ParamChangedError as exc:
        print(json.dumps({{"raised": str(exc)}}))
    trackd.log_param("lr", 0.1)  # the value it has: fine
"""


def _run_with_lr(store: Path, daemon: DaemonProcess) -> str:
    with store_client(store, daemon.paths.socket) as client:
        run_id = client.create_run("0").info.run_id
        client.log_param(run_id, "lr", 0.1)
        client.set_terminated(run_id, "FINISHED")
        client.flush(timeout=30)
    return run_id


def test_a_resumed_run_refuses_a_changed_param_at_the_call(daemon: DaemonProcess, store: Path) -> None:
    run_id = _run_with_lr(store, daemon)
    result = run_child(RESUME.format(run_id=run_id), fluent_env(daemon, store))
    assert result.returncode == 0, result.stderr
    raised = json.loads(result.stdout)["raised"]
    assert "Changing param values is not allowed" in raised and "'lr'" in raised, raised
    assert "refused" not in result.stderr, result.stderr  # nothing reached the daemon to refuse
