"""search_runs and search_experiments with MLflow's filter_string and order_by return what
``mlflow.MlflowClient`` returns on the same store: the same ids in the same order, the same pages,
and the same error code for a filter MLflow refuses.

A real daemon writes the store through a trackd Client, real MLflow adds a run, deletes one and
an experiment, and its answers are the expected values. They used to raise InvalidArgument for
any filter or order_by ("trackd has no MLflow search grammar").
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from helpers import DaemonProcess, short_socket_path

from trackd import Client, ClientConfig, InvalidArgument

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import ViewType  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

T0 = 1_700_000_000_000
NAN = float("nan")
INF = float("inf")


class Store(NamedTuple):
    root: Path
    socket: Path
    experiment_id: str
    other_experiment_id: str
    ids: dict[str, str]  # run name -> run id


# (run name, start offset, metrics as [(value, step)] per key, params, tags, end status)
_RUNS: list[tuple[str, int, dict[str, list[tuple[float, int]]], dict[str, str], dict[str, str], str | None]] = [
    ("bert-base", 0, {"acc": [(0.5, 0), (0.95, 1)], "loss": [(0.1, 0)]}, {"lr": "0.01", "opt": "adam"}, {"team": "nlp"}, "FINISHED"),
    ("bert-large", 1, {"acc": [(0.91, 0)], "loss": [(NAN, 0)]}, {"lr": "0.001", "opt": "Adam"}, {"team": "NLP"}, "FINISHED"),
    ("gpt_small", 2, {"acc": [(INF, 0)]}, {"lr": "0.01"}, {"team": "vision"}, None),
    ("gpt-small", 3, {"acc": [(-INF, 0)], "loss": [(2.0, 0)]}, {}, {}, "FAILED"),
    ("resnet", 4, {"my key": [(3.0, 0)], "a/b": [(2.0, 0)]}, {"a b": "x y", "lr": "0.1"}, {"team": "vision"}, "KILLED"),
    ("nan-run", 5, {"acc": [(NAN, 0)]}, {"lr": "0.01"}, {}, "FINISHED"),
    ("same-start", 1, {"acc": [(0.91, 0)]}, {"lr": "0.001"}, {"team": "nlp"}, None),
    ("deleted", 6, {"acc": [(0.99, 0)]}, {"lr": "0.01"}, {"team": "nlp"}, "FINISHED"),
]


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """The store every search here reads: trackd's runs, one MLflow run, one deleted run."""
    root = tmp_path_factory.mktemp("search") / "mlruns"
    socket = short_socket_path()
    daemon = DaemonProcess(socket).start()
    try:
        with Client(root, config=ClientConfig(socket_path=socket, autostart=False)) as client:
            experiment_id = client.create_experiment("runs", tags={"team": "nlp"})
            other_experiment_id = client.create_experiment("other-runs")
            client.create_experiment("exp_b", tags={"team": "Vision"})
            ids: dict[str, str] = {}
            for name, offset, metrics, params, tags, status in _RUNS:
                run_id = client.create_run(experiment_id, start_time=T0 + offset, run_name=name, tags=tags).info.run_id
                ids[name] = run_id
                for key, points in metrics.items():
                    for number, step in points:
                        client.log_metric(run_id, key, number, timestamp=T0 + step, step=step)
                for key, text in params.items():
                    client.log_param(run_id, key, text)
                if status is not None:
                    client.set_terminated(run_id, status, end_time=T0 + 100 + offset)
            ids["other"] = client.create_run(other_experiment_id, start_time=T0 + 7, run_name="other").info.run_id
            client.log_metric(ids["other"], "acc", 0.97)
            client.flush()
        theirs = MlflowClient(str(root))
        mlflow_run = theirs.create_run(experiment_id, start_time=T0 + 8, run_name="by-mlflow")
        theirs.log_metric(mlflow_run.info.run_id, "acc", 0.93)
        theirs.log_param(mlflow_run.info.run_id, "lr", "0.01")
        ids["by-mlflow"] = mlflow_run.info.run_id
        theirs.delete_run(ids["deleted"])
        theirs.delete_experiment(theirs.create_experiment("gone", tags={"team": "nlp"}))
        yield Store(root, socket, experiment_id, other_experiment_id, ids)
    finally:
        assert daemon.stop() == 0, daemon.log()
        shutil.rmtree(socket.parent, ignore_errors=True)


@pytest.fixture
def ours(searched: Store) -> Iterator[Client]:
    with Client(searched.root, config=ClientConfig(socket_path=searched.socket, autostart=False)) as client:
        yield client


def _both(searched: Store, ours: Client, method: str, *args: Any, **kwargs: Any) -> tuple[list[str], list[str]]:
    """The ids trackd's and MLflow's ``method`` return, in order."""
    def ids(items: list[Any]) -> list[str]:
        return [getattr(item, "info", item).run_id if method == "search_runs" else item.experiment_id for item in items]

    return ids(getattr(ours, method)(*args, **kwargs)), ids(getattr(MlflowClient(str(searched.root)), method)(*args, **kwargs))


RUN_FILTERS = [
    "",
    "metrics.acc > 0.9",
    "metrics.acc >= 0.95",
    "metrics.acc < 0.92",
    "metrics.acc <= -1e308",
    "metrics.acc = 0.91",
    "metrics.acc != 0.91",  # NaN is != everything
    "metrics.acc > 1e308",  # inf
    "metric.acc > -1",
    "metrics.loss != 0",
    "metrics.acc>0.9 and metrics.loss<1",
    "metrics.`my key` = 3",
    'metrics."my key" >= 3',
    'metrics."a/b" = 2',
    "metrics.missing > 0",
    "params.lr = '0.01'",
    'params.lr = "0.01"',
    "params.lr != '0.01'",
    "params.lr LIKE '0.0%'",
    "params.lr LIKE '0.0_'",
    "params.lr like '%1'",
    "params.opt LIKE 'adam'",
    "params.opt ILIKE 'ADAM'",
    "params.lr IS NULL",
    "params.lr IS NOT NULL",
    "params.`a b` = 'x y'",
    "param.opt = 'adam' and metrics.acc > 0.9",
    "metrics.acc > 0.9 and params.lr = '0.01'",
    "metrics.acc > 0.9 AND params.lr = '0.01' AND tags.team = 'nlp'",
    "tags.team = 'nlp'",
    "tags.team ILIKE 'nlp'",
    "tags.team LIKE '%i%'",
    "tags.team IS NULL",
    "tags.`mlflow.runName` LIKE 'bert%'",
    "tags.mlflow.runName = 'resnet'",
    "attributes.status = 'FINISHED'",
    "status != 'FINISHED'",
    "attribute.run_name LIKE 'gpt_small'",  # _ is any one character: gpt_small and gpt-small
    "run_name ILIKE 'BERT%'",
    "`Run Name` = 'resnet'",
    f"attr.start_time >= {T0 + 2}",
    f"created < {T0 + 2}",
    "end_time > 0",
    f"run.end_time <= {T0 + 101}",
]


@pytest.mark.parametrize("filter_string", RUN_FILTERS)
@pytest.mark.parametrize("view", [ViewType.ACTIVE_ONLY, ViewType.ALL])
def test_search_runs_filter_keeps_the_runs_mlflow_keeps(searched: Store, ours: Client, filter_string: str, view: int) -> None:
    trackd_ids, mlflow_ids = _both(searched, ours, "search_runs", [searched.experiment_id], filter_string, view)
    assert trackd_ids == mlflow_ids


def test_search_runs_filter_on_run_ids_and_artifact_uri(searched: Store, ours: Client) -> None:
    ids = searched.ids
    for filter_string in [
        f"run_id IN ('{ids['bert-base']}', '{ids['resnet']}')",
        f"attributes.run_id NOT IN ('{ids['bert-base']}')",
        f"run_id = '{ids['gpt_small']}'",
        f"artifact_uri LIKE '%{ids['resnet']}%'",
        f"run_id IN ('{ids['deleted']}', '{ids['other']}')",
    ]:
        found = []
        for view in (ViewType.ACTIVE_ONLY, ViewType.DELETED_ONLY, ViewType.ALL):
            experiments = [searched.experiment_id, searched.other_experiment_id]
            trackd_ids, mlflow_ids = _both(searched, ours, "search_runs", experiments, filter_string, view)
            assert trackd_ids == mlflow_ids, (filter_string, view)
            found += trackd_ids
        assert found, filter_string


RUN_ORDERS = [
    ["metrics.acc DESC"],
    ["metrics.acc"],
    ["metrics.acc ASC", "params.lr DESC"],
    ["params.lr DESC", "metrics.acc DESC"],
    ["metrics.loss DESC"],
    ["metrics.loss asc"],
    ["params.lr"],
    ["tags.team DESC"],
    ["tags.`mlflow.runName`"],
    ["metrics.`my key` DESC"],
    ["attributes.start_time"],
    ["start_time ASC"],
    ["end_time DESC"],
    ["status"],
    ["run_name DESC"],
    ["created"],
    ["run_id"],
    ["attr.user_id", "metrics.acc desc"],
]


@pytest.mark.parametrize("order_by", RUN_ORDERS, ids=", ".join)
@pytest.mark.parametrize("filter_string", ["", "metrics.acc > 0"])
def test_search_runs_order_by_sorts_as_mlflow(searched: Store, ours: Client, order_by: list[str], filter_string: str) -> None:
    trackd_ids, mlflow_ids = _both(
        searched, ours, "search_runs", [searched.experiment_id, searched.other_experiment_id], filter_string, ViewType.ALL, order_by=order_by
    )
    assert trackd_ids == mlflow_ids


def test_filtered_ordered_pages_are_mlflows_pages(searched: Store, ours: Client) -> None:
    theirs = MlflowClient(str(searched.root))
    arguments = ([searched.experiment_id], "params.lr IS NOT NULL", ViewType.ALL)
    pages: dict[str, list[list[str]]] = {"ours": [], "theirs": []}
    for name, client in (("ours", ours), ("theirs", theirs)):
        token = None
        while True:
            page = client.search_runs(*arguments, max_results=2, order_by=["metrics.acc DESC"], page_token=token)
            pages[name].append([run.info.run_id for run in page])
            token = page.token
            if not token:
                break
    assert pages["ours"] == pages["theirs"] and len(pages["ours"]) == 4
    # A token of one reads the same page in the other.
    token = theirs.search_runs(*arguments, max_results=3, order_by=["metrics.acc DESC"]).token
    page = ours.search_runs(*arguments, max_results=3, order_by=["metrics.acc DESC"], page_token=token)
    assert [run.info.run_id for run in page] == pages["theirs"][1][1:] + pages["theirs"][2]


RUN_ERRORS: list[tuple[str, list[str] | None]] = [
    ("metrics.acc > 1 OR metrics.loss < 1", None),
    ("metrics.acc > 'x'", None),
    ("metrics.acc > inf", None),
    ("params.lr = 0.01", None),
    ("params.lr > '1'", None),
    ("metrics.acc == 1", None),
    ("metrics.acc IS NULL", None),
    ("foo.bar = 1", None),
    ("METRICS.acc = 1", None),
    ("lifecycle_stage = 'active'", None),
    ("run_name IN ('a')", None),
    ("run_id IN ('a', 1)", None),
    ("start_time > '1'", None),
    ("status = FINISHED", None),
    ("(metrics.acc > 1)", None),
    ("metrics.acc > 1; params.lr = '0.01'", None),
    ("metrics.acc", None),
    ("params.from = 'x'", None),
    ("  ", None),
    ("", ["metrics.acc DOWN"]),
    ("", ["foo.bar"]),
    ("", ["metrics.acc DESC, params.lr"]),
    ("", ["lifecycle_stage"]),
    ("", ["metrics.acc DESC NULLS LAST"]),
    ("", ["metrics.acc "]),
]


@pytest.mark.parametrize(("filter_string", "order_by"), RUN_ERRORS)
def test_search_runs_refuses_what_mlflow_refuses_with_its_code(
    searched: Store, ours: Client, filter_string: str, order_by: list[str] | None
) -> None:
    with pytest.raises(MlflowException) as theirs:
        MlflowClient(str(searched.root)).search_runs([searched.experiment_id], filter_string, order_by=order_by)
    with pytest.raises(InvalidArgument) as refused:
        ours.search_runs([searched.experiment_id], filter_string, order_by=order_by)
    assert refused.value.error_code == theirs.value.error_code == "INVALID_PARAMETER_VALUE"


def test_search_runs_error_names_the_bad_part_in_mlflows_words(searched: Store, ours: Client) -> None:
    for filter_string, said in [
        ("metrics.acc > 1 OR metrics.loss < 1", "Invalid clause(s) in filter string: 'OR'"),
        ("metrics.acc > 'x'", "Expected numeric value type for metric. Found 'x'"),
        ("foo.bar = 1", "Invalid entity type 'foo'."),
        ("run_name IN ('a')", "Only ['run_id'] attributes support comparison with a list of quoted string values."),
    ]:
        with pytest.raises(MlflowException, match=None) as theirs:
            MlflowClient(str(searched.root)).search_runs([searched.experiment_id], filter_string)
        with pytest.raises(InvalidArgument) as refused:
            ours.search_runs([searched.experiment_id], filter_string)
        assert said in str(refused.value) and said in theirs.value.message


EXPERIMENT_SEARCHES: list[tuple[str | None, list[str] | None]] = [
    ("name = 'runs'", None),
    ("name LIKE '%runs'", None),
    ("name ILIKE 'EXP%'", None),
    ("attribute.name != 'Default'", None),
    ("tags.team = 'nlp'", None),
    ("tags.team ILIKE 'vision'", None),
    ("tags.team IS NULL", None),
    ("tags.team IS NOT NULL", None),
    ("experiment_id IN ('1', '3')", None),
    ("experiment_id NOT IN ('0')", None),
    ("creation_time > 0", None),
    ("last_update_time >= 0 and name LIKE '%s'", None),
    (None, ["name"]),
    (None, ["name DESC"]),
    (None, ["experiment_id"]),
    (None, ["creation_time ASC"]),
    (None, ["last_update_time DESC"]),
    ("tags.team IS NOT NULL", ["name ASC", "creation_time DESC"]),
]


@pytest.mark.parametrize(("filter_string", "order_by"), EXPERIMENT_SEARCHES)
@pytest.mark.parametrize("view", [ViewType.ACTIVE_ONLY, ViewType.DELETED_ONLY, ViewType.ALL])
def test_search_experiments_filter_and_order_as_mlflow(
    searched: Store, ours: Client, filter_string: str | None, order_by: list[str] | None, view: int
) -> None:
    trackd_ids, mlflow_ids = _both(searched, ours, "search_experiments", view, filter_string=filter_string, order_by=order_by)
    assert trackd_ids == mlflow_ids


@pytest.mark.parametrize(
    ("filter_string", "order_by"),
    [("attributes.name = 'x'", None), ("name IS NULL", None), ("metrics.acc > 1", None), ("name > 'a'", None), (None, ["tags.team"])],
)
def test_search_experiments_refuses_what_mlflow_refuses(
    searched: Store, ours: Client, filter_string: str | None, order_by: list[str] | None
) -> None:
    with pytest.raises(MlflowException) as theirs:
        MlflowClient(str(searched.root)).search_experiments(filter_string=filter_string, order_by=order_by)
    with pytest.raises(InvalidArgument) as refused:
        ours.search_experiments(filter_string=filter_string, order_by=order_by)
    assert refused.value.error_code == theirs.value.error_code == "INVALID_PARAMETER_VALUE"
