"""MLflow's log_figure, log_image, get_artifact_uri and search_runs, ported with ``import trackd as mlflow``.

Each scenario is one script run twice in fresh interpreters: once with ``import trackd as mlflow``
(through the test's daemon) and once with ``import mlflow`` (real MLflow, its own store). The two
artifact trees must be the same files with the same bytes. matplotlib, plotly and Pillow are not
installed: ``STUBS`` stands in for them, a figure or image class of the library's name whose save
methods write real bytes naming what they were asked (MLflow checks the classes; trackd does not).
"""

from __future__ import annotations

import json
import os
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
from fluent_helpers import fluent_env, mlflow_reader, only_run, quiet_result, run_child
from helpers import DaemonProcess, child_env, run_python, short_socket_path

from trackd.client._delivery import sync_spools

pytest.importorskip("mlflow")
from mlflow.tracking import artifact_utils  # noqa: E402

STUBS = {
    "matplotlib/__init__.py": "",
    "matplotlib/figure.py": """
        import os
        class Figure:
            def __init__(self, extra=0):
                self.extra = extra
            def savefig(self, fname, **kwargs):
                with open(fname, "wb") as f:
                    f.write(f"savefig {os.path.basename(fname)} {sorted(kwargs.items())}".encode() + b"." * self.extra)
    """,
    "plotly/__init__.py": "from . import graph_objects",
    "plotly/graph_objects.py": """
        import os
        class Figure:
            def write_html(self, file, **kwargs):
                with open(file, "w") as f:
                    f.write(f"write_html {os.path.basename(file)} {sorted(kwargs.items())}")
            def write_image(self, file, **kwargs):
                with open(file, "wb") as f:
                    f.write(f"write_image {os.path.basename(file)} {sorted(kwargs.items())}".encode())
    """,
    "PIL/__init__.py": "",
    "PIL/Image.py": """
        import os
        class Image:
            def __init__(self, size=(300, 200), pixels=b""):
                self.size, self.pixels = size, pixels
            def resize(self, size):
                return Image(size, self.pixels)
            def save(self, fp, format=None, **params):
                with open(fp, "wb") as f:
                    f.write(f"save {os.path.basename(fp)} {self.size} ".encode() + self.pixels)
        def fromarray(array):
            return Image((array.shape[1], array.shape[0]), f"{array.dtype} {array.shape} ".encode() + array.tobytes())
    """,
}

PROLOGUE = """
import json, os, sys
if sys.argv[1] == "trackd":
    import trackd as mlflow
else:
    import mlflow
"""


def _stubs(folder: Path) -> Path:
    for name, text in STUBS.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(textwrap.dedent(text))
    return folder


def _ported(script: str, daemon: DaemonProcess, tmp_path: Path, *, stubs: bool = True) -> dict[str, dict[str, Any]]:
    """Run ``script`` under trackd and under MLflow; each side's artifacts {path: bytes}, tags and
    what it printed last (JSON), its stderr if it failed."""
    code = PROLOGUE + textwrap.dedent(script)
    path = [str(_stubs(tmp_path / "stubs"))] if stubs else []
    sides: dict[str, dict[str, Any]] = {}
    for side in ("trackd", "mlflow"):
        store, temporary = tmp_path / f"{side}-mlruns", tmp_path / f"{side}-tmp"
        temporary.mkdir()
        env = fluent_env(daemon, store, MLFLOW_TRACKING_URI=str(store), TMPDIR=str(temporary))
        env["PYTHONPATH"] = os.pathsep.join([*path, env.get("PYTHONPATH", "")])
        result = run_python(code.replace("sys.argv[1]", repr(side)), env, cwd=tmp_path)
        if result.returncode != 0:
            sides[side] = {"error": result.stderr.strip().splitlines()[-1]}
            continue
        run = only_run(store)
        root = store / "0" / run.info.run_id / "artifacts"
        files = {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
        printed = result.stdout.strip().splitlines()
        sides[side] = {
            "files": files, "tags": run.data.tags, "printed": json.loads(printed[-1]) if printed else None,
            "left_in_tmp": sorted(p.name for p in temporary.iterdir()),
        }
    return sides


def _same(sides: dict[str, dict[str, Any]]) -> dict[str, Any]:
    assert "error" not in sides["trackd"], sides["trackd"]
    assert "error" not in sides["mlflow"], sides["mlflow"]
    assert sides["trackd"]["files"] == sides["mlflow"]["files"]
    return sides["trackd"]


# -- log_figure -----------------------------------------------------------------------------------


def test_log_figure_saves_matplotlib_and_plotly_figures_where_mlflow_does(daemon: DaemonProcess, tmp_path: Path) -> None:
    # This used to be an AttributeError: trackd had no log_figure.
    ours = _same(_ported(
        """
        from matplotlib.figure import Figure
        from plotly import graph_objects
        with mlflow.start_run():
            mlflow.log_figure(Figure(), "figure.png")
            mlflow.log_figure(Figure(), "./plots//loss.pdf", save_kwargs={"dpi": 300})
            mlflow.log_figure(graph_objects.Figure(), "plots/interactive.html")
            mlflow.log_figure(graph_objects.Figure(), "plots/static.svg", save_kwargs={"scale": 2})
        """,
        daemon, tmp_path,
    ))
    assert sorted(ours["files"]) == ["figure.png", "plots/interactive.html", "plots/loss.pdf", "plots/static.svg"]
    # MLflow's defaults for a plotly figure's HTML: the script from a CDN, not opened in a browser.
    assert ours["files"]["plots/interactive.html"] == b"write_html interactive.html [('auto_open', False), ('include_plotlyjs', 'cdn')]"
    assert ours["left_in_tmp"] == []


def test_log_figure_larger_than_the_inline_limit_is_copied_before_its_temporary_file_goes(daemon: DaemonProcess, tmp_path: Path) -> None:
    # Past 8 MiB the daemon copies the file from its path after the call: the temporary file must
    # outlive the call until it has.
    ours = _same(_ported(
        """
        from matplotlib.figure import Figure
        with mlflow.start_run():
            mlflow.log_figure(Figure(extra=9 * 1024 * 1024), "big.svg")
        """,
        daemon, tmp_path,
    ))
    assert len(ours["files"]["big.svg"]) > 9 * 1024 * 1024
    assert ours["left_in_tmp"] == []


@pytest.mark.parametrize(("figure", "artifact_file"), [("object()", "f.png"), ("graph_objects.Figure()", "f.txt")])
def test_log_figure_refuses_what_mlflow_refuses_with_its_error(daemon: DaemonProcess, tmp_path: Path, figure: str, artifact_file: str) -> None:
    sides = _ported(
        f"""
        from plotly import graph_objects
        with mlflow.start_run():
            mlflow.log_figure({figure}, {artifact_file!r})
        """,
        daemon, tmp_path,
    )
    error = str(sides["mlflow"]["error"])
    assert error.startswith("TypeError: Unsupported ")
    assert str(sides["trackd"]["error"]).startswith(error.split(" object type: ")[0])


# -- log_image ------------------------------------------------------------------------------------


def test_log_image_saves_a_pil_image_and_numpy_arrays_as_mlflow_does(daemon: DaemonProcess, tmp_path: Path) -> None:
    # This used to be an AttributeError. The arrays cover MLflow's conversion rules: bool, float in [0, 1], float outside (rescaled),
    # ints, and a H x W x 1 grayscale.
    ours = _same(_ported(
        """
        import warnings
        import numpy as np
        from PIL.Image import Image
        warnings.simplefilter("ignore")  # the rescaling warning, which both give
        with mlflow.start_run():
            from mlflow import Image as Wrapped  # mlflow.Image, a PIL image inside
            mlflow.log_image(Image((4, 3), b"pixels"), "image.png")
            mlflow.log_image(Wrapped(Image((5, 3), b"wrapped")), "wrapped.png")
            mlflow.log_image(np.array([[True, False]]), "arrays/mask.png")
            mlflow.log_image(np.array([[0.0, 0.5, 1.0]]), "arrays/floats.png")
            mlflow.log_image(np.array([[-1.0, 3.0]], dtype=np.float32), "arrays/rescaled.png")
            mlflow.log_image(np.arange(12, dtype=np.int64).reshape(2, 2, 3), "arrays/rgb.png")
            mlflow.log_image(np.full((2, 2, 1), 7, dtype=np.uint8), "arrays/gray.png")
        """,
        daemon, tmp_path,
    ))
    assert len(ours["files"]) == 7


def test_log_image_with_a_key_writes_mlflows_images_layout_and_tag(daemon: DaemonProcess, tmp_path: Path) -> None:
    # MLflow's UI shows images/<key>+step+<step>+timestamp+<ms>+<uuid>.png and its compressed .webp
    # for a run tagged mlflow.loggedImages.
    sides = _ported(
        """
        from PIL.Image import Image
        with mlflow.start_run():
            mlflow.log_image(Image((512, 128), b"wide"), key="samples/val", step=3, timestamp=1700000000000)
            mlflow.log_image(Image((100, 400), b"tall"), key="tall", timestamp=1700000000001, synchronous=True)
        """,
        daemon, tmp_path,
    )
    unique = r"\+[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"  # each file's uuid4
    trees = {}
    for side in ("trackd", "mlflow"):
        assert "error" not in sides[side], sides[side]
        files = sides[side]["files"]
        assert isinstance(files, dict)
        trees[side] = {re.sub(unique, "+<uuid>", path): re.sub(unique.encode(), b"+<uuid>", content) for path, content in files.items()}
        assert len(trees[side]) == len(files) == 4
    assert trees["trackd"] == trees["mlflow"]
    assert sorted(trees["trackd"]) == [
        "images/samples~val+step+3+timestamp+1700000000000+<uuid>+compressed.webp",
        "images/samples~val+step+3+timestamp+1700000000000+<uuid>.png",
        "images/tall+step+0+timestamp+1700000000001+<uuid>+compressed.webp",
        "images/tall+step+0+timestamp+1700000000001+<uuid>.png",
    ]
    tags = [sides[side]["tags"] for side in ("trackd", "mlflow")]
    assert [t.get("mlflow.loggedImages") for t in tags] == ["True", "True"]


@pytest.mark.parametrize("array", ["[[300]]", "[[-1]]", "np.zeros((2, 2, 2))", "np.zeros((2,))", "[['a']]"])
def test_log_image_refuses_the_arrays_mlflow_refuses_with_its_error(daemon: DaemonProcess, tmp_path: Path, array: str) -> None:
    sides = _ported(f"import numpy as np\nwith mlflow.start_run():\n    mlflow.log_image(np.array({array}), 'x.png')\n", daemon, tmp_path)
    assert str(sides["trackd"]["error"]) == str(sides["mlflow"]["error"])
    assert str(sides["trackd"]["error"]).startswith(("ValueError: ", "TypeError: "))


@pytest.mark.parametrize("call", [
    "mlflow.log_image(np.zeros((2, 2), dtype=np.uint8), 'x.png')",
    "mlflow.log_image(object(), 'x.png')",
    "mlflow.log_image(np.zeros((2, 2)), 'x.png', step=1)",
    "mlflow.log_image(np.zeros((2, 2)))",
])
def test_log_image_refuses_what_mlflow_refuses_with_its_error_pillow_missing(daemon: DaemonProcess, tmp_path: Path, call: str) -> None:
    # Without Pillow, MLflow cannot make an image of an array (nor check a PIL image): neither can trackd.
    sides = _ported(f"import numpy as np\nwith mlflow.start_run():\n    {call}\n", daemon, tmp_path, stubs=False)
    theirs, ours = str(sides["mlflow"]["error"]), str(sides["trackd"]["error"])
    if theirs.startswith("ModuleNotFoundError: No module named 'PIL'"):
        # MLflow imports PIL to check a type it does not know; trackd names what it takes.
        assert ours.startswith("TypeError: Unsupported image object type: <class 'object'>.")
    else:
        assert ours == theirs


# -- get_artifact_uri -----------------------------------------------------------------------------


def test_get_artifact_uri_is_mlflows_for_the_active_run(daemon: DaemonProcess, store: Path, tmp_path: Path) -> None:
    # This used to be an AttributeError. MLflow's get_artifact_uri reads the run from the store.
    paths = [None, "features/x.txt", "/lead.txt", "a//b/", "with space.txt"]
    result = quiet_result(run_child(
        f"""
        import json, trackd
        elsewhere = trackd.create_experiment("elsewhere", artifact_location={str(tmp_path / "art")!r})
        uris = {{}}
        for experiment in ("0", elsewhere):
            with trackd.start_run(experiment_id=experiment) as run:
                uris[run.info.run_id] = [trackd.get_artifact_uri(path) for path in {paths!r}]
        print(json.dumps(uris))
        """,
        fluent_env(daemon, store),
    ))
    assert len(result) == 2
    for run_id, uris in result.items():
        mlflow_artifact_uri: Any = artifact_utils.get_artifact_uri  # untyped in MLflow
        assert uris == [mlflow_artifact_uri(run_id, path, tracking_uri=str(store)) for path in paths]


def test_get_artifact_uri_starts_a_run_and_does_not_wait_for_a_daemon(store: Path, tmp_path: Path) -> None:
    # The run's artifact URI is known when it starts: with no daemon to answer, the call still returns it.
    # The run it starts is spooled at exit: into a folder of the test's own, not the session's.
    env = child_env(
        short_socket_path(), TRACKD_AUTOSTART="0", TRACKD_TRACKING_URI=str(store), TRACKD_EXIT_TIMEOUT="0.1",
        TRACKD_SPOOL_DIR=str(tmp_path / "spool"),
    )
    result = run_child(
        """
        import trackd
        uri = trackd.get_artifact_uri("model")
        print(uri, trackd.active_run().run_id)
        """,
        env,
    )
    assert result.returncode == 0, result.stderr
    uri, run_id = result.stdout.split()
    # A plain path as the tracking URI gives plain paths, as MLflow's get_artifact_uri does (7664d0d).
    assert uri == f"{(store / '0').resolve()}/{run_id}/artifacts/model"


# -- search_runs and log_table ------------------------------------------------------------------


def test_search_runs_as_a_list_returns_mlflows_runs_in_its_order(daemon: DaemonProcess, store: Path) -> None:
    # This used to be an AttributeError. (MLflow's default, a pandas DataFrame: test_search_runs_pandas.py.)
    result = quiet_result(run_child(
        """
        import json, trackd
        experiment = trackd.set_experiment("sweep")
        for trial in range(3):
            with trackd.start_run():
                trackd.log_metric("loss", trial)
        ids = lambda runs: [run.info.run_id for run in runs]
        print(json.dumps({
            "experiment": experiment.experiment_id,
            "active": ids(trackd.search_runs(output_format="list")),
            "by_name": ids(trackd.search_runs(experiment_names=["sweep", "missing"], max_results=2, output_format="list")),
            "all": ids(trackd.search_runs(search_all_experiments=True, output_format="list")),
        }))
        """,
        fluent_env(daemon, store),
    ))
    theirs = [run.info.run_id for run in mlflow_reader(store).search_runs([str(result["experiment"])])]
    assert len(theirs) == 3
    assert result["active"] == result["all"] == theirs
    assert result["by_name"] == theirs[:2]


def test_log_table_says_what_to_use_instead(daemon: DaemonProcess, store: Path) -> None:
    result = run_child(
        """
        import trackd
        with trackd.start_run():
            trackd.log_table({"inputs": ["a"]}, "table.json")
        """,
        fluent_env(daemon, store),
    )
    assert result.returncode == 1
    assert "trackd.errors.InvalidArgument: trackd.log_table('table.json') is not implemented" in result.stderr
    assert "trackd.log_dict" in result.stderr
    assert only_run(store).info.status == "FAILED"


def test_a_large_figure_logged_with_no_daemon_is_written_when_its_spool_is_synced(socket_path: Path, tmp_path: Path) -> None:
    # A file over 8 MiB goes to the spool as its path: its temporary folder must stay for the
    # daemon that copies it later, or the figure was lost without a word.
    store, spool, temporary = tmp_path / "mlruns", tmp_path / "spool", tmp_path / "tmp"
    temporary.mkdir()
    env = child_env(
        socket_path, TRACKD_AUTOSTART="0", TRACKD_TRACKING_URI=str(store), TRACKD_SPOOL_DIR=str(spool),
        TRACKD_CONNECT_TIMEOUT="0.5", TRACKD_EXIT_TIMEOUT="0.5", TMPDIR=str(temporary),
    )
    result = run_child(
        """
        import trackd
        class Figure:
            def savefig(self, fname, **kwargs):
                with open(fname, "wb") as f:
                    f.write(b"." * (9 * 1024 * 1024))
        with trackd.start_run() as run:
            trackd.log_figure(Figure(), "plots/big.svg")
        print(run.info.run_id)
        """,
        env,
    )
    assert result.returncode == 0, result.stderr
    run_id = result.stdout.split()[-1]
    # Beside the spool, in the client's media folder (see _media_folders), not in the temporary folder.
    [kept] = [p.relative_to(spool).parts[2:] for p in spool.rglob("*") if p.is_file() and p.parent.parent.name.endswith(".media")]
    assert kept == ("big.svg",)
    daemon = DaemonProcess(socket_path).start()
    try:
        [synced] = sync_spools(spool, socket_path, timeout=60)
        assert synced.error is None, synced
    finally:
        assert daemon.stop() == 0, daemon.log()
    figure = mlflow_reader(store).download_artifacts(run_id, "plots/big.svg", str(tmp_path / "down"))
    assert Path(figure).read_bytes() == b"." * (9 * 1024 * 1024)
    assert not list(spool.glob("*.media")), "the figure's folder stayed after its spool was delivered"
