"""Names a script ported with ``import trackd as mlflow`` uses: MlflowClient, exceptions.MlflowException,
and start_run(log_system_metrics=...). Each was an AttributeError or a TypeError."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fluent_helpers import fluent_env, run_child
from helpers import DaemonProcess

import trackd
from trackd import Client, InvalidArgument


def test_mlflow_client_is_trackds_client(client: Client) -> None:
    assert trackd.MlflowClient is trackd.Client
    assert isinstance(trackd.MlflowClient(client.tracking_uri, config=client.config), Client)


def test_except_mlflow_exceptions_mlflow_exception_catches_trackds_errors(client: Client) -> None:
    mlflow = trackd  # as a ported script names it
    run_id = client.create_run().info.run_id
    with pytest.raises(mlflow.exceptions.MlflowException) as bad_key:
        client.log_metric(run_id, "a b?", 1.0)
    assert isinstance(bad_key.value, InvalidArgument)
    assert bad_key.value.error_code == "INVALID_PARAMETER_VALUE"
    assert bad_key.value.message == str(bad_key.value)
    with pytest.raises(mlflow.MlflowException) as missing:
        client.get_run("0" * 32)
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_import_trackd_loads_neither_the_exceptions_module_nor_the_client() -> None:
    # `import trackd` stays the fluent functions alone; the new names load on first access.
    code = (
        "import sys, trackd; before = {'trackd.exceptions', 'trackd.client._client'} & set(sys.modules); "
        "trackd.exceptions.MlflowException; trackd.MlflowClient; "
        "print(sorted(before), sorted({'trackd.exceptions', 'trackd.client._client'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[0] == "[] ['trackd.client._client', 'trackd.exceptions']"


def test_start_run_takes_log_system_metrics_and_says_once_that_it_collects_none(daemon: DaemonProcess, store: Path) -> None:
    result = run_child(
        """
        import trackd
        with trackd.start_run(log_system_metrics=False):
            pass
        with trackd.start_run(log_system_metrics=None):
            pass
        with trackd.start_run(log_system_metrics=True):
            trackd.log_metric("loss", 0.5)
        """,
        fluent_env(daemon, store),
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "trackd: start_run(log_system_metrics=True): trackd collects no system metrics; the run starts without "
        "them (log them with trackd.log_metrics() from a thread of your own).",
    ]


def test_load_table_hint_gives_a_path_that_opens_the_logged_table(client: Client) -> None:
    # It said to read trackd.get_artifact_uri(artifact_file), a file:// URI that open() takes as a
    # relative path ("./file:/tmp/...").
    import urllib.parse
    import urllib.request

    with pytest.raises(AttributeError) as missing:
        trackd.load_table  # noqa: B018
    assert "urllib.request.url2pathname(urllib.parse.urlparse(uri).path)" in str(missing.value)
    run = client.create_run()
    client.log_dict(run.info.run_id, {"columns": ["a"], "data": [[1]]}, "table.json")
    client.flush()
    uri = f"{run.info.artifact_uri}/table.json"
    with open(urllib.request.url2pathname(urllib.parse.urlparse(uri).path)) as table:
        assert '"columns"' in table.read()
