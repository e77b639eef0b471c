"""An item the daemon refuses is warned of once, as it is refused, not only at the next flush() or at exit.

A user review made a store unwritable (`chmod -R a-w mlruns`) mid-run: the runs logged meanwhile
were refused, and the job heard of it only as it exited, hours later in a real job.
"""

from __future__ import annotations

from pathlib import Path

from helpers import Child, DaemonProcess, child_env, wait_for

from trackd import Client, ClientConfig

# argv: store, run id, go file. Logs a param another process set to another value (refused by the
# daemon, which alone can tell), and waits for the go file before it ends.
CHILD = """
import os, sys, time
import trackd
client = trackd.Client(sys.argv[1])
client.log_param(sys.argv[2], "lr", "0.2")
client.log_param(sys.argv[2], "momentum", "0.5")
for i in range(3):
    client.log_metric(sys.argv[2], "loss", 1.0 / (i + 1), step=i)
print("logged", flush=True)
while not os.path.exists(sys.argv[3]):
    time.sleep(0.02)
client.log_param(sys.argv[2], "wd", "0.1")
"""


def test_the_first_refusal_is_warned_while_the_process_runs_and_exit_counts_them(
    store: Path, config: ClientConfig, daemon: DaemonProcess, tmp_path: Path,
) -> None:
    with Client(store, config=config) as client:
        run_id = client.create_run().info.run_id
        client.log_param(run_id, "lr", "0.1")
        client.log_param(run_id, "wd", "0.0")
        client.flush()
    go = tmp_path / "go"
    with Child(CHILD, [str(store), run_id, str(go)], child_env(daemon.paths.socket, TRACKD_AUTOSTART="0")) as child:
        wait_for(lambda: any("the daemon refused" in line for line in child.err), message="the refusal's warning")
        assert child.process.poll() is None, "warned only at exit"
        warned = [line for line in child.err if line.startswith("trackd: ")]
        assert len(warned) == 1, warned
        assert warned[0].startswith("trackd: the daemon refused param 'lr'"), warned
        assert "Changing param values is not allowed" in warned[0] and "Later refusals are not warned of one by one" in warned[0]
        go.touch()
        assert child.wait(30) == 0, child.stderr()
    lines = [line for line in child.err if line.startswith("trackd: ")]
    # The second refusal (wd) is not warned of by itself: the exit's line counts both.
    assert len(lines) == 2, lines
    assert lines[1].startswith("trackd: 2 logged items, 2 events, will not be written: "), lines
    with Client(store, config=config) as client:
        run = client.get_run(run_id)
    assert run.data.params == {"lr": "0.1", "wd": "0.0", "momentum": "0.5"}
    assert run.data.metrics == {"loss": 1.0 / 3}


# argv: two stores. Each client deletes a tag its run never had (refused by the daemon) and flushes.
TWO_CLIENTS = """
import sys
import trackd
for store in sys.argv[1:]:
    client = trackd.Client(store)
    run_id = client.create_run("0").info.run_id
    client.delete_tag(run_id, "never-set")
    try:
        client.flush()
    except trackd.DeliveryError as exc:
        print("raised", exc.failures[0], flush=True)
    client.close()
"""


def test_the_refusal_line_is_said_once_a_process_not_once_a_client(daemon: DaemonProcess, tmp_path: Path) -> None:
    # Once per sender, a review found three lines in one process: a client per store, and one made
    # again after close().
    stores = [str(tmp_path / "a" / "mlruns"), str(tmp_path / "b" / "mlruns"), str(tmp_path / "a" / "mlruns")]
    with Child(TWO_CLIENTS, stores, child_env(daemon.paths.socket, TRACKD_AUTOSTART="0")) as child:
        assert child.wait(60) == 0, child.stderr()
    assert len([line for line in child.out if line.startswith("raised tag 'never-set'")]) == 3, child.out
    refused = [line for line in child.err if "the daemon refused" in line]
    assert len(refused) == 1 and refused[0].startswith("trackd: the daemon refused tag 'never-set'"), child.err
