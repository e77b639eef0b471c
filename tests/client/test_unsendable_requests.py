"""A request the sender cannot build or encode fails alone: its caller gets the error, and
every request and batch after it goes on to the daemon."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import DaemonProcess

from trackd import Client, ClientConfig
from trackd.errors import LocalProtocolError
from trackd.protocol import CreateExperiment, Event, GetExperiment


def _unencodable(request_id: int) -> Event:
    # msgpack cannot pack a lone surrogate. The call sites refuse such a name (a public call
    # never builds this request), so it goes through the client's internal request API: the
    # guard is for a check a call site lacks, as the batches have one (SenderState._encode).
    return CreateExperiment(request_id=request_id, name="bad \ud800", artifact_location=None, tags={})


def _unbuildable(request_id: int) -> Event:
    return GetExperiment(request_id=request_id, name="", create=True)  # the event refuses an empty name


@pytest.mark.parametrize("build", [_unencodable, _unbuildable], ids=["encode", "build"])
def test_a_request_that_cannot_be_sent_fails_alone_and_the_sender_goes_on(
    store: Path, daemon: DaemonProcess, build: Callable[[int], Event]
) -> None:
    # The sender thread raised out of its cycle, dropped the connection, reconnected and sent the
    # same request first again, for ever: the caller waited out connect_timeout, and every later
    # request, batch and flush waited behind it.
    config = ClientConfig(socket_path=daemon.paths.socket, autostart=False, connect_timeout=3.0)
    with Client(store, config=config) as client:
        run_id = client.create_run("0").info.run_id
        client.log_metric(run_id, "before", 1.0, step=0)
        with pytest.raises(LocalProtocolError, match="Cannot create experiment 'bad'"):
            client._sender.ask("create experiment 'bad'", build)
        experiment_id = client.get_or_create_experiment("after")
        client.log_metric(run_id, "after", 2.0, step=0)
        client.flush(timeout=30)
        assert [m.value for m in client.get_metric_history(run_id, "before")] == [1.0]
        assert [m.value for m in client.get_metric_history(run_id, "after")] == [2.0]
        assert client.get_experiment(experiment_id).name == "after"
