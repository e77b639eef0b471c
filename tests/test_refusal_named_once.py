"""A refused item is named once on stderr: by the warning as it is refused, not again by exit's line,
which still counts it.

Two ranks of a job set a param of their shared run differently: the daemon refuses the second
value (a param cannot change in MLflow), and rank 1 said so twice, the warning's sentence repeated
by the line exit prints a few lines below.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from helpers import Child, DaemonProcess, child_env, wait_for
from mlflow.tracking import MlflowClient

from trackd import Client, ClientConfig

pytestmark = pytest.mark.timeout(90)

# argv: run id, go file, then key=value params. Logs the params to the shared run and, as rank 0,
# waits for the go file before it exits (and ends the run).
RANK = """
import os, sys, time
import trackd
trackd.start_run(run_id=sys.argv[1])
for param in sys.argv[3:]:
    trackd.log_param(*param.split("=", 1))
trackd.log_metric("loss", 0.5)
if os.environ["RANK"] == "0":
    trackd.flush()
    print("logged", flush=True)
    while not os.path.exists(sys.argv[2]):
        time.sleep(0.02)
"""

CHANGED = "Changing param values is not allowed"


@pytest.mark.parametrize(
    ("changed", "exit_line"),
    [
        (["lr"], "1 logged item, 1 event, will not be written: the refusal warned of above."),
        (["lr", "wd"], "2 logged items, 2 events, will not be written: param 'wd' of run "),
        (["lr", "wd", "beta"], "3 logged items, 3 events, will not be written: param 'wd' of run "),
    ],
)
def test_a_param_ranks_set_differently_is_named_once_and_counted_at_exit(
    store: Path, config: ClientConfig, daemon: DaemonProcess, tmp_path: Path, changed: list[str], exit_line: str,
) -> None:
    with Client(store, config=config) as client:
        run_id = client.create_run("0").info.run_id
    go = tmp_path / "go"
    env = child_env(daemon.paths.socket, TRACKD_AUTOSTART="0", TRACKD_TRACKING_URI=str(store))
    first = [f"{key}=0.1" for key in ("lr", "wd", "beta")]
    with Child(RANK, [run_id, str(go), *first], {**env, "RANK": "0"}) as rank0:
        wait_for(lambda: "logged" in rank0.out, timeout=30, message="rank 0's params")
        second = [f"{key}=0.2" for key in changed] + ["momentum=0.9"]
        with Child(RANK, [run_id, str(go), *second], {**env, "RANK": "1"}) as rank1:
            assert rank1.wait(30) == 0, rank1.stderr()
        go.touch()
        assert rank0.wait(30) == 0, rank0.stderr()
    rank1_said = f"trackd (rank 1, pid {rank1.process.pid}): "  # a rank names itself (tests/client/test_exit_lines_named.py)
    said = [line for line in rank1.err if line.startswith(rank1_said)]
    assert len(said) == 2, said
    assert said[0].startswith(f"{rank1_said}the daemon refused param 'lr' of run {run_id} (1 event): ") and CHANGED in said[0], said
    assert said[1].startswith(f"{rank1_said}{exit_line}"), said
    for index, key in enumerate(changed):
        # This used to be 2 for lr: the warning's sentence, then exit's line quoting it again. The
        # warning names lr and exit's line the first it did not (wd); the rest are counted.
        assert rank1.stderr().count(f"param '{key}'") == (index < 2), said
    assert said[1].count(CHANGED) == (len(changed) > 1), said
    if len(changed) == 2:
        assert said[1].endswith("(and 1 more, warned of above)"), said
    if len(changed) == 3:
        assert said[1].endswith("(and 2 more, one of them warned of above)"), said
    assert rank0.err == [], rank0.err
    run = MlflowClient(tracking_uri=f"file:{store}").get_run(run_id)
    assert run.data.params == {"lr": "0.1", "wd": "0.1", "beta": "0.1", "momentum": "0.9"}


# argv: run id, go file. Changes a param (refused), then logs a point once the go file is there.
CHANGE_THEN_LOG = """
import os, sys, time
import trackd
client = trackd.Client()
client.log_param(sys.argv[1], "lr", "0.2")
while not os.path.exists(sys.argv[2]):
    time.sleep(0.02)
client.log_metric(sys.argv[1], "loss", 0.5)
"""


def test_exit_counts_a_refusal_also_when_its_wait_for_the_daemon_runs_out(
    store: Path, config: ClientConfig, daemon: DaemonProcess, tmp_path: Path,
) -> None:
    with Client(store, config=config) as client:
        run_id = client.create_run("0").info.run_id
        client.log_param(run_id, "lr", "0.1")
    go = tmp_path / "go"
    env = child_env(
        daemon.paths.socket, TRACKD_AUTOSTART="0", TRACKD_TRACKING_URI=str(store), TRACKD_EXIT_TIMEOUT="1",
        TRACKD_SPOOL_DIR=str(tmp_path / "spool"),
    )
    with Child(CHANGE_THEN_LOG, [run_id, str(go)], env) as child:
        wait_for(lambda: any("the daemon refused param 'lr'" in line for line in child.err), message="the refusal's warning")
        daemon.signal(signal.SIGSTOP)
        try:
            go.touch()
            assert child.wait(30) == 0, child.stderr()
        finally:
            daemon.signal(signal.SIGCONT)
    # This used to say nothing of it: a wait that ran out (the point spooled) skipped the count.
    assert "trackd: 1 logged item, 1 event, will not be written: the refusal warned of above." in child.err, child.err
    assert child.stderr().count("param 'lr'") == 1, child.err
