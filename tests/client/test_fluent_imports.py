"""What ``import trackd`` and a short run load: every module is import time and memory in each training process."""

from __future__ import annotations

from pathlib import Path

from fluent_helpers import fluent_env, quiet_result, only_run, run_child
from helpers import DaemonProcess, child_env, run_python


def test_import_trackd_loads_the_client_sender_and_msgpack_only_at_start_run(daemon: DaemonProcess, store: Path) -> None:
    # Short processes (test suites, sweeps) pay for every module import trackd loads.
    result = quiet_result(run_child(
        """
        import json, sys, trackd
        delivery = ("trackd.client._client", "trackd.client._sender", "trackd.protocol", "trackd.store", "msgpack")
        daemon_side = ("trackd.store._writer", "trackd.store._write_items", "trackd.daemon")
        loaded = lambda names: [name for name in names if name in sys.modules]
        after_import = loaded(delivery)
        with trackd.start_run():
            after_start_run = loaded(delivery)
            trackd.log_metric("loss", 0.5)
        print(json.dumps({"after_import": after_import, "after_start_run": after_start_run, "daemon_side": loaded(daemon_side)}))
        """,
        fluent_env(daemon, store),
    ))
    assert result["after_import"] == []
    assert result["after_start_run"] == ["trackd.client._client", "trackd.client._sender", "trackd.protocol", "trackd.store", "msgpack"]
    assert result["daemon_side"] == []  # what the daemon writes with, a training process never loads
    assert only_run(store).data.metrics == {"loss": 0.5}


# What a short run must not load: each is memory and import time in every training process, for
# work only the daemon or a rare path does (PyYAML ~11 ms; logging, tempfile with shutil and
# random, uuid with platform: ~3 MB of RSS together; dataclasses with inspect: ~21 ms and 1.6 MB).
HEAVY_MODULES = ("yaml", "logging", "tempfile", "shutil", "random", "uuid", "platform", "dataclasses", "inspect")


def test_a_short_run_in_the_default_experiment_loads_no_heavy_module(daemon: DaemonProcess, store: Path) -> None:
    # meta.yaml's artifact location, all a new run needs, is read without PyYAML when it is a plain path.
    code = (
        "import sys, trackd\n"
        "with trackd.start_run():\n"
        "    trackd.log_metric('loss', 0.5)\n"
        f"print(*[name for name in {HEAVY_MODULES!r} if name in sys.modules])\n"
    )
    env = child_env(daemon.paths.socket, TRACKD_TRACKING_URI=str(store))
    first = run_python(code, env)  # makes the store, and experiment 0's meta.yaml to read next time
    assert first.returncode == 0, first.stderr
    assert (store / "0" / "meta.yaml").is_file()
    result = run_python(code, env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == []
