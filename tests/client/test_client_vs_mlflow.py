"""``trackd.Client``'s reads return what ``mlflow.MlflowClient`` returns on the same store, with MLflow's arguments.

A real daemon writes the store through a trackd Client; real MLflow reads it back (and deletes
runs and experiments in it, as a user would) and its answers are the expected values.
"""

from __future__ import annotations

import importlib
import shutil
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import DaemonProcess, RawClient

from trackd import Client, ClientConfig, DaemonUnavailable, DeliveryError, FileInfo, FlushTimeout, InvalidArgument

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import ViewType  # noqa: E402

T0 = 1_700_000_000_000


@pytest.fixture
def client(store: Path, daemon: DaemonProcess) -> Iterator[Client]:
    with Client(store, config=ClientConfig(socket_path=daemon.paths.socket, autostart=False)) as client:
        yield client


def _runs_in_order(client: Client, count: int) -> tuple[str, list[str]]:
    """An experiment with ``count`` runs started a millisecond apart, and their ids."""
    experiment_id = client.create_experiment("exp")
    return experiment_id, [client.create_run(experiment_id, start_time=T0 + i).info.run_id for i in range(count)]


# -- run status -----------------------------------------------------------------------------------


def test_run_status_is_mlflows_string_in_get_run_and_search_runs(client: Client, store: Path) -> None:
    # This used to be an IntEnum: `status == "FINISHED"` was False and it printed as 3.
    experiment_id, (running, finished) = _runs_in_order(client, 2)
    client.set_terminated(finished, 3)
    ours = {r.info.run_id: r.info.status for r in client.search_runs(experiment_id)}
    theirs = {r.info.run_id: r.info.status for r in MlflowClient(str(store)).search_runs([experiment_id])}
    assert ours == theirs == {running: "RUNNING", finished: "FINISHED"}
    status = client.get_run(finished).info.status
    assert type(status) is str and f"{status}" == "FINISHED"
    # meta.yaml keeps MLflow's int.
    assert "\nstatus: 3\n" in (store / experiment_id / finished / "meta.yaml").read_text()


# -- list_artifacts -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [None, "", ".", "cfg", "cfg/", "./cfg", "cfg/sub", "a.txt", "missing", "empty"])
def test_list_artifacts_returns_what_mlflow_returns(client: Client, store: Path, path: str | None) -> None:
    run_id = client.create_run().info.run_id
    client.log_text(run_id, "hello", "cfg/config.json")
    client.log_text(run_id, "x" * 1000, "cfg/sub/deep.txt")
    client.log_text(run_id, "", "a.txt")
    client.flush()
    (store / "0" / run_id / "artifacts" / "empty").mkdir()
    theirs = MlflowClient(str(store)).list_artifacts(run_id, path)
    ours = client.list_artifacts(run_id, path)
    assert [(f.path, f.is_dir, f.file_size) for f in ours] == [(f.path, f.is_dir, f.file_size) for f in theirs]
    assert all(type(f) is FileInfo for f in ours)


def test_list_artifacts_is_one_level_deep_with_sizes_and_no_size_for_folders(client: Client) -> None:
    run_id = client.create_run().info.run_id
    client.log_text(run_id, "hello", "cfg/config.json")
    client.log_text(run_id, "abc", "a.txt")
    assert client.list_artifacts(run_id) == [FileInfo("a.txt", False, 3), FileInfo("cfg", True, None)]
    assert client.list_artifacts(run_id, "cfg") == [FileInfo("cfg/config.json", False, 5)]


def test_list_artifacts_refuses_a_path_outside_the_artifact_root(client: Client) -> None:
    # MLflow raises "Invalid path: resolved path is outside the artifact directory".
    run_id = client.create_run().info.run_id
    with pytest.raises(InvalidArgument, match="no '..'"):
        client.list_artifacts(run_id, "../..")


# -- search_runs and search_experiments -----------------------------------------------------------


@pytest.mark.parametrize("max_results", [0, 1, 3, 1000])
@pytest.mark.parametrize("view", [ViewType.ACTIVE_ONLY, ViewType.DELETED_ONLY, ViewType.ALL])
def test_search_runs_takes_mlflows_view_type_and_max_results(client: Client, store: Path, view: int, max_results: int) -> None:
    experiment_id, run_ids = _runs_in_order(client, 5)
    client.flush()
    mlflow_client = MlflowClient(str(store))
    for run_id in run_ids[1::2]:
        mlflow_client.delete_run(run_id)
    theirs = mlflow_client.search_runs([experiment_id], "", view, max_results)
    ours = client.search_runs([experiment_id], "", view, max_results)
    assert [r.info.run_id for r in ours] == [r.info.run_id for r in theirs]
    assert [r.info.lifecycle_stage for r in ours] == [r.info.lifecycle_stage for r in theirs]


def test_search_runs_returns_mlflows_default_of_1000_runs(client: Client, store: Path) -> None:
    experiment_id, run_ids = _runs_in_order(client, 1001)
    ours = client.search_runs(experiment_id)
    assert [r.info.run_id for r in ours] == [r.info.run_id for r in MlflowClient(str(store)).search_runs([experiment_id])]
    assert len(ours) == 1000 and ours[-1].info.run_id == run_ids[1]


def test_search_runs_and_experiments_page_as_mlflows_and_take_each_others_tokens(client: Client, store: Path) -> None:
    # A sweep picking its best trial pages through them as with MlflowClient (`while token:`); the
    # page_token used to raise, and a plain list had no `.token`, so the loop broke on
    # AttributeError, and the default max_results silently cut a 2,000-trial sweep in half.
    experiment_id, run_ids = _runs_in_order(client, 5)
    for name in ("a", "b", "c"):
        client.create_experiment(name)
    mlflow_client = MlflowClient(str(store))

    def pages(search: Callable[[Any], list[Any]], ident: Callable[[Any], str]) -> list[tuple[list[str], bool]]:
        seen, token = [], None
        while True:
            page = search(token)
            seen.append(([ident(item) for item in page], page.token is not None))  # type: ignore[attr-defined]
            token = page.token  # type: ignore[attr-defined]
            if not token:
                return seen

    def run_id(run: Any) -> str:
        return str(run.info.run_id)

    def experiment_id_of(experiment: Any) -> str:
        return str(experiment.experiment_id)

    ours = pages(lambda token: client.search_runs([experiment_id], max_results=2, page_token=token), run_id)
    theirs = pages(lambda token: mlflow_client.search_runs([experiment_id], max_results=2, page_token=token), run_id)
    assert ours == theirs and [i for ids, _ in ours for i in ids] == run_ids[::-1]
    ours = pages(lambda token: client.search_experiments(max_results=2, page_token=token), experiment_id_of)
    theirs = pages(lambda token: mlflow_client.search_experiments(max_results=2, page_token=token), experiment_id_of)
    assert ours == theirs and len(ours) == 3  # Default, exp, a, b, c
    # A token from one reads the same page in the other.
    mlflow_token = mlflow_client.search_runs([experiment_id], max_results=2).token
    our_token = client.search_runs([experiment_id], max_results=2).token
    assert [run_id(r) for r in client.search_runs([experiment_id], max_results=2, page_token=mlflow_token)] == run_ids[2:0:-1]
    assert [run_id(r) for r in mlflow_client.search_runs([experiment_id], max_results=2, page_token=our_token)] == run_ids[2:0:-1]
    with pytest.raises(InvalidArgument, match="Invalid page token 'not-a-token'"):
        client.search_runs([experiment_id], page_token="not-a-token")


@pytest.mark.parametrize("max_results", [1, 2, 1000])
@pytest.mark.parametrize("view", [ViewType.ACTIVE_ONLY, ViewType.DELETED_ONLY, ViewType.ALL])
def test_search_experiments_takes_mlflows_view_type_and_max_results(client: Client, store: Path, view: int, max_results: int) -> None:
    experiment_ids = [client.create_experiment(f"exp-{i}") for i in range(3)]
    mlflow_client = MlflowClient(str(store))
    mlflow_client.delete_experiment(experiment_ids[1])
    theirs = mlflow_client.search_experiments(view, max_results)
    ours = client.search_experiments(view, max_results)
    assert [(e.experiment_id, e.lifecycle_stage) for e in ours] == [(e.experiment_id, e.lifecycle_stage) for e in theirs]


def test_search_runs_takes_a_filter_string_positionally_as_mlflow_does(client: Client) -> None:
    # tests/store/test_search_filter.py compares the grammar with MLflow's.
    run_id = client.create_run().info.run_id
    client.log_metric(run_id, "loss", 0.5)
    assert [r.info.run_id for r in client.search_runs(["0"], "metrics.loss < 1")] == [run_id]
    assert [r.info.run_id for r in client.search_runs(["0"], "metrics.loss > 1")] == []
    # MLflow's defaults, spelled out, are accepted.
    assert [r.info.run_id for r in client.search_runs(["0"], "", ViewType.ACTIVE_ONLY, 10, [], None)] == [run_id]


@pytest.mark.parametrize("max_results", [-1, 50_001, "10", None])
def test_search_runs_refuses_max_results_mlflow_refuses_or_misreads(client: Client, max_results: object) -> None:
    with pytest.raises(InvalidArgument, match="Invalid max_results"):
        client.search_runs(["0"], max_results=max_results)  # type: ignore[arg-type]


@pytest.mark.parametrize("max_results", [0, 50_001, 1.5])
def test_search_experiments_refuses_max_results_mlflow_refuses(client: Client, max_results: object) -> None:
    with pytest.raises(InvalidArgument, match="Invalid max_results"):
        client.search_experiments(max_results=max_results)  # type: ignore[arg-type]


def test_search_refuses_an_unknown_view_type(client: Client) -> None:
    with pytest.raises(InvalidArgument, match="Invalid view type 4"):
        client.search_runs(["0"], run_view_type=4)
    with pytest.raises(InvalidArgument, match="Invalid view type 'ALL'"):
        client.search_experiments(view_type="ALL")  # type: ignore[arg-type]


# -- experiments without a daemon -----------------------------------------------------------------


@pytest.mark.parametrize("method", ["get_or_create_experiment", "create_experiment"])
def test_experiment_requests_without_a_daemon_raise_daemon_unavailable_naming_the_experiment(
    tmp_path: Path, store: Path, capsys: pytest.CaptureFixture[str], method: str
) -> None:
    # This used to raise FlushTimeout: "... 0 events are still on their way to the store".
    config = ClientConfig(
        socket_path=tmp_path / "none.sock", autostart=False, connect_timeout=0.5, spool_dir=tmp_path / "spool"
    )
    with Client(store, config=config) as client:
        with pytest.raises(DaemonUnavailable, match=f"experiment 'x': the trackd daemon at {tmp_path}/none.sock is unreachable"):
            getattr(client, method)("x")
    err = capsys.readouterr().err
    # close() used to say "0 events are spooled to None".
    assert "spooled to None" not in err and "0 events are spooled" not in err


def test_experiment_request_to_a_stalled_daemon_times_out_naming_the_experiment(store: Path, daemon: DaemonProcess) -> None:
    # A daemon that answers the connection but not the request is slow, not unavailable.
    config = ClientConfig(socket_path=daemon.paths.socket, autostart=False, connect_timeout=0.5)
    with Client(store, config=config) as client:
        client.create_run()
        client.flush()  # connected: the run reached the daemon
        daemon.signal(signal.SIGSTOP)
        try:
            with pytest.raises(FlushTimeout, match="Cannot get or create experiment 'x': the trackd daemon at .* did not answer within 0.5 s"):
                client.get_or_create_experiment("x")
        finally:
            daemon.signal(signal.SIGCONT)


@pytest.mark.parametrize("autostart", [True, False], ids=["autostart", "no-autostart"])
def test_experiment_request_to_a_daemon_that_refuses_the_client_says_why(
    socket_path: Path, store: Path, tmp_path: Path, autostart: bool
) -> None:
    # A daemon that refused the handshake (its connection limit here; another protocol version
    # after an upgrade) was reported as "unreachable; none answered ... Start one with `trackd
    # daemon start`", which was running already: only the sender's stderr line said why.
    daemon = DaemonProcess(socket_path, "--max-connections", "1").start()
    holder = RawClient(socket_path)
    config = ClientConfig(socket_path=socket_path, autostart=autostart, connect_timeout=0.5, spool_dir=tmp_path / "spool")
    try:
        with Client(store, config=config) as client:
            with pytest.raises(DaemonUnavailable) as raised:
                client.get_or_create_experiment("x")
    finally:
        holder.close()
        assert daemon.stop() == 0
    message = str(raised.value)
    assert message.startswith(f"Cannot get or create experiment 'x': the daemon at {socket_path} ")
    assert "refused this client's last attempt to connect (The trackd daemon already serves 1 connection" in message, message
    assert "trackd daemon start" not in message, message


# MLflow parameters trackd has no use for: logged models, datasets, system metrics, Unity Catalog.
MLFLOW_ONLY_PARAMETERS = {"model_id", "dataset", "log_system_metrics", "trace_location", "dataset_name", "dataset_digest"}
FLUENT_FUNCTIONS = [
    "log_metric", "log_metrics", "log_param", "log_params", "set_tag", "set_tags", "delete_tag", "log_artifact",
    "log_artifacts", "log_text", "log_dict", "start_run", "end_run", "set_experiment", "create_experiment",
    "set_tracking_uri", "get_run", "active_run", "last_active_run", "is_tracking_uri_set", "flush_async_logging",
    "get_artifact_uri", "log_figure", "log_image", "log_table", "search_runs", "enable_system_metrics_logging",
    "disable_system_metrics_logging", "set_system_metrics_sampling_interval", "set_system_metrics_samples_before_logging",
    "set_system_metrics_node_id",
]


@pytest.mark.parametrize("name", FLUENT_FUNCTIONS)
def test_fluent_functions_take_mlflows_arguments_in_mlflows_order(name: str) -> None:
    # mlflow.log_metric("loss", 0.5, 3, True) means synchronous=True; trackd's keyword-only
    # arguments made it a TypeError, and log_params had no run_id.
    import trackd

    assert _positional(getattr(trackd, name)) == _positional(getattr(mlflow, name))


def _positional(function: Callable[..., object]) -> list[str]:
    """The names of ``function``'s positional parameters, less the MLflow-only ones."""
    import inspect

    return [
        p.name for p in inspect.signature(function).parameters.values()
        if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD and p.name not in MLFLOW_ONLY_PARAMETERS
    ]


CLIENT_METHODS = [
    "create_experiment", "get_experiment", "get_experiment_by_name", "search_experiments", "create_run",
    "set_terminated", "get_run", "get_metric_history", "search_runs", "list_artifacts", "log_metric",
    "log_param", "set_tag", "delete_tag", "log_batch", "log_artifact", "log_artifacts", "log_text", "log_dict",
    "log_figure", "log_image",
]


@pytest.mark.parametrize("name", CLIENT_METHODS)
def test_client_methods_take_mlflow_client_arguments_in_its_order(name: str) -> None:
    # MlflowClient().log_metric(run_id, key, value, timestamp, step, synchronous) and log_batch(...,
    # synchronous) were TypeErrors with trackd.Client. dataset_name and dataset_digest are the
    # dataset arguments trackd does not take.
    assert _positional(getattr(Client, name)) == _positional(getattr(MlflowClient, name))


def test_synchronous_logging_through_the_client_is_in_the_store_when_the_call_returns(client: Client, store: Path) -> None:
    run_id = client.create_run("0").info.run_id
    client.log_metric(run_id, "loss", 0.5, T0, 1, True)
    client.log_param(run_id, "lr", "0.1", synchronous=True)
    client.set_tag(run_id, "team", "ml", synchronous=True)
    run = MlflowClient(str(store)).get_run(run_id)  # MLflow reads ./mlruns: nothing flushed it
    assert (run.data.metrics, run.data.params, run.data.tags["team"]) == ({"loss": 0.5}, {"lr": "0.1"}, "ml")


def test_asynchronous_logging_returns_operations_whose_wait_puts_them_in_the_store(client: Client, store: Path) -> None:
    # MLflow's synchronous=False returns a RunOperations; trackd returned None, so the MLflow idiom
    # `client.log_metric(..., synchronous=False).wait()` was an AttributeError.
    run_id = client.create_run("0").info.run_id
    operations = [
        client.log_metric(run_id, "loss", 0.5, T0, 1, False),
        client.log_param(run_id, "lr", "0.1", synchronous=False),
        client.set_tag(run_id, "team", "ml", synchronous=False),
        client.log_batch(run_id, params=[_Pair("seed", "7")], synchronous=False),
    ]
    for operation in operations:
        assert operation is not None
        operation.wait()
    run = MlflowClient(str(store)).get_run(run_id)
    assert (run.data.metrics, run.data.params, run.data.tags["team"]) == ({"loss": 0.5}, {"lr": "0.1", "seed": "7"}, "ml")
    assert client.log_param(run_id, "epochs", "3") == "3"  # the value, as MLflow returns it unless synchronous=False
    assert client.log_param(run_id, "batch", "32", synchronous=True) == "32"


def test_waiting_on_asynchronous_operations_reports_what_the_daemon_refused(client: Client) -> None:
    run_id = client.create_run("0").info.run_id
    client.delete_tag(run_id, "never-set")  # the store refuses it: MLflow raises for a missing tag
    operation = client.set_tag(run_id, "team", "ml", synchronous=False)
    assert operation is not None
    with pytest.raises(DeliveryError, match="never-set"):
        operation.wait()


class _Pair:
    def __init__(self, key: str, value: str) -> None:
        self.key, self.value = key, value


@pytest.mark.parametrize("location", ["arts", "file:arts", "{tmp}/plain-arts"])
def test_an_artifact_location_is_resolved_in_the_callers_folder_and_stored_as_mlflow_stores_it(
    daemon: DaemonProcess, store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, location: str
) -> None:
    # A relative one was resolved by the daemon, whose folder is /, so the run's artifacts went to
    # /arts; and an absolute path was stored as a file:// URI where MLflow stores the path.
    monkeypatch.chdir(tmp_path)
    location = location.format(tmp=tmp_path)
    mlflow_store = tmp_path / "mlflow-store"
    mlflow_id = MlflowClient(tracking_uri=str(mlflow_store)).create_experiment("e", artifact_location=location)
    with Client(store, config=ClientConfig(socket_path=daemon.paths.socket, autostart=False)) as client:
        experiment_id = client.create_experiment("e", artifact_location=location)
        run_id = client.create_run(experiment_id).info.run_id
        client.log_text(run_id, "hello", "note.txt")
        client.flush()
        stored = client.get_experiment(experiment_id).artifact_location
    assert stored == MlflowClient(tracking_uri=str(mlflow_store)).get_experiment(mlflow_id).artifact_location
    folder = Path(stored.removeprefix("file://"))
    assert folder.is_absolute() and (folder / run_id / "artifacts" / "note.txt").read_text() == "hello"
    assert MlflowClient(tracking_uri=str(store)).list_artifacts(run_id)[0].path == "note.txt"


def test_an_artifact_path_given_as_a_path_logs_where_mlflow_logs_it(client: Client, store: Path, tmp_path: Path) -> None:
    # Lightning's MLFlowLogger logs each checkpoint with artifact_path=Path(prefix) / Path(ckpt).stem,
    # and its metadata with log_artifacts(run_id, tmp_dir, that Path). MLflow takes the Path;
    # trackd raised AttributeError ('PosixPath' object has no attribute 'rstrip').
    checkpoint = tmp_path / "epoch=0-step=10.ckpt"
    checkpoint.write_bytes(b"weights")
    metadata = tmp_path / "metadata"
    metadata.mkdir()
    (metadata / "aliases.txt").write_text("['latest']")
    mlflow_client = MlflowClient(str(tmp_path / "mlflow-store"))
    # MLflow's hints say str, but its FileStore takes a Path (path_not_unique compares str(name)).
    prefix: Any = Path("ckpts") / checkpoint.stem
    logged = {}
    for logger in (client, mlflow_client):
        run_id = logger.create_run("0").info.run_id
        logger.log_artifact(run_id, str(checkpoint), prefix)
        logger.log_artifacts(run_id, str(metadata), prefix)
        logged[logger is client] = [(f.path, f.file_size) for f in logger.list_artifacts(run_id, f"ckpts/{checkpoint.stem}")]
    assert logged[True] == logged[False] == [("ckpts/epoch=0-step=10/aliases.txt", 10), ("ckpts/epoch=0-step=10/epoch=0-step=10.ckpt", 7)]
    assert MlflowClient(str(store)).list_artifacts(run_id=client.search_runs("0")[0].info.run_id, path="ckpts")[0].is_dir


def test_an_artifact_path_that_is_neither_a_str_nor_a_path_is_refused(client: Client, tmp_path: Path) -> None:
    source = tmp_path / "a.txt"
    source.write_text("a")
    run_id = client.create_run("0").info.run_id
    with pytest.raises(InvalidArgument, match="expected a str or a path, got int"):
        client.log_artifact(run_id, source, 3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "read",
    [
        lambda client: client.get_experiment_by_name("Default"),
        lambda client: client.get_experiment("0"),
        lambda client: client.search_experiments()[0],
    ],
    ids=["get_experiment_by_name", "get_experiment", "search_experiments"],
)
def test_experiment_reads_of_a_new_store_find_default_as_mlflows_do(
    client: Client, store: Path, tmp_path: Path, read: Callable[[Any], Any]
) -> None:
    # MLflow's FileStore makes experiment 0 when it opens a missing root; trackd's daemon makes it
    # when it first opens the store, so these reads found nothing before a run or an experiment
    # was made, and Lightning's MLFlowLogger(experiment_name="Default"), creating the experiment
    # it did not find, got ExperimentExists.
    theirs = read(MlflowClient(str(tmp_path / "mlflow-store")))
    ours = read(client)
    assert (ours.experiment_id, ours.name, ours.lifecycle_stage) == (theirs.experiment_id, theirs.name, "active") == ("0", "Default", "active")
    assert [e.name for e in MlflowClient(str(store)).search_experiments()] == ["Default"]


@pytest.mark.parametrize(
    "read",
    [
        lambda client: client.get_experiment_by_name("mnist"),
        lambda client: client.get_experiment(client.search_experiments()[0].experiment_id),
        lambda client: client.search_experiments()[0],
    ],
    ids=["get_experiment_by_name", "get_experiment", "search_experiments"],
)
def test_experiment_reads_of_a_store_whose_default_was_removed_read_the_files_without_a_daemon(
    store: Path, tmp_path: Path, read: Callable[[Any], Any]
) -> None:
    # These reads asked the daemon to make "Default" in any store without experiment 0, one whose
    # "Default" was removed for good (mlflow gc, rm -r mlruns/0) included: with no daemon running
    # they raised DaemonUnavailable, after the connect timeout, where they had read the files.
    MlflowClient(str(store)).create_experiment("mnist")
    shutil.rmtree(store / "0")
    config = ClientConfig(socket_path=tmp_path / "none.sock", autostart=False, connect_timeout=1.0)
    with Client(store, config=config) as client:
        assert read(client).name == "mnist"


@pytest.mark.parametrize("artifact_file", ["args.json", "args.txt"])
def test_log_dict_writes_values_json_cannot_hold_as_their_str_as_mlflows_does(
    client: Client, store: Path, tmp_path: Path, artifact_file: str
) -> None:
    # A training config holds Paths, dtypes, NumPy scalars: MLflow's log_dict writes each as its
    # str (json.dump(..., default=str)); trackd's raised TypeError ("... is not JSON serializable").
    import datetime
    import decimal

    config = {"output_dir": Path("/ckpt/run-1"), "started": datetime.date(2026, 1, 2), "lr": decimal.Decimal("0.1"), "n": 3}
    theirs = MlflowClient(str(tmp_path / "mlflow-store"))
    written = {}
    for logger in (client, theirs):
        run_id = logger.create_run("0").info.run_id
        logger.log_dict(run_id, config, artifact_file)
        logger.list_artifacts(run_id)  # trackd's flushes
        written[logger is client] = next(Path(logger.get_run(run_id).info.artifact_uri.removeprefix("file://")).iterdir()).read_bytes()
    assert written[True] == written[False]
    assert b'"output_dir": "/ckpt/run-1"' in written[True]


def _logged_dict(client: Client, store: Path, config: Any, artifact_file: str) -> Any:
    """``config`` logged by trackd's log_dict, read back from where MLflow says the run's artifacts are."""
    import json

    import yaml

    run_id = client.create_run("0").info.run_id
    client.log_dict(run_id, config, artifact_file)
    client.flush()
    text = (Path(MlflowClient(str(store)).get_run(run_id).info.artifact_uri.removeprefix("file://")) / artifact_file).read_text()
    return yaml.safe_load(text) if artifact_file.endswith(".yaml") else json.loads(text)


@pytest.mark.parametrize("artifact_file", ["config.json", "config.yaml"])
def test_log_dict_writes_numpy_values_as_the_numbers_and_lists_they_hold(client: Client, store: Path, artifact_file: str) -> None:
    # MLflow's log_dict writes these to JSON as strings ("0.1", "[1 2]"; a long array's str is cut
    # to "[   0    1 ... 1999]") and to YAML as !!python/object tags that yaml.safe_load refuses;
    # trackd's YAML raised RepresenterError('cannot represent an object', array([1, 2])).
    np = pytest.importorskip("numpy")
    config = {
        "lr": np.float32(0.1), "epochs": np.int64(3), "sizes": np.array([1, 2]), "shuffle": np.bool_(True),
        "grid": np.array([[0.5, 1.5]], dtype=np.float16), "ids": np.arange(2000),
    }
    expected = {"lr": 0.1, "epochs": 3, "sizes": [1, 2], "shuffle": True, "grid": [[0.5, 1.5]], "ids": list(range(2000))}
    assert _logged_dict(client, store, config, artifact_file) == expected


@pytest.mark.parametrize(
    ("config", "where", "kind"),
    [
        ({"model": {"output_dir": Path("/ckpt")}}, r"\['model'\]\['output_dir'\]", r"pathlib\.\w*Path"),
        ({"schedule": [0.1, complex(1, 2)]}, r"\['schedule'\]\[1\]", "complex"),
    ],
    ids=["Path", "complex"],
)
def test_log_dict_refuses_a_value_yaml_cannot_hold_naming_its_key_and_type(
    client: Client, config: dict[str, Any], where: str, kind: str
) -> None:
    # It raised yaml's RepresenterError('cannot represent an object', PosixPath('/ckpt')), naming
    # neither the key nor the type; MLflow writes a !!python/object tag yaml.safe_load refuses.
    run_id = client.create_run("0").info.run_id
    with pytest.raises(InvalidArgument, match=rf"Cannot write 'config.yaml': the value at {where} is a {kind}, which YAML cannot hold"):
        client.log_dict(run_id, config, "config.yaml")
    assert client.list_artifacts(run_id) == []


class TensorFlowLikeTensor:
    """What a TensorFlow EagerTensor offers here: float() of one value, and .shape; no .item(),
    which TensorFlow adds only under enable_numpy_behavior (its Tensor class has none)."""

    def __init__(self, values: list[float]) -> None:
        self.values = values
        self.shape = (len(values),)

    def __float__(self) -> float:
        if len(self.values) != 1:
            raise TypeError("only size-1 tensors can be converted to Python scalars")
        return float(self.values[0])


def _tensorflow_tensors() -> list[Any]:
    """A TensorFlow tensor of one value and one of two, when TensorFlow is installed, else stand-ins."""
    try:
        tf = importlib.import_module("tensorflow")
    except ImportError:
        return [TensorFlowLikeTensor([0.5]), TensorFlowLikeTensor([1.0, 2.0])]
    return [tf.constant(0.5), tf.constant([1.0, 2.0])]


def test_a_tensorflow_tensor_of_one_value_is_logged_as_mlflows_client_logs_it(client: Client, store: Path) -> None:
    # docs/api.md promises a TensorFlow tensor holding one value, as MLflow's client takes it (float()).
    # trackd asked only for .item(), which a TensorFlow tensor lacks, and refused it as "not a real
    # number": a Keras callback logging its loss tensor raised in the training loop.
    from mlflow.tracking.metric_value_conversion_utils import convert_metric_value_to_float_if_possible

    one, two = _tensorflow_tensors()
    run_id = client.create_run().info.run_id
    client.log_metric(run_id, "loss", one, step=0)
    client.flush()
    logged = [m.value for m in MlflowClient(str(store)).get_metric_history(run_id, "loss")]
    assert logged == [convert_metric_value_to_float_if_possible(one)] == [0.5]
    with pytest.raises(InvalidArgument, match=r"metric 'loss': expected a real number, or an array or tensor holding one, got \w+ of shape \(2,\)"):
        client.log_metric(run_id, "loss", two)
