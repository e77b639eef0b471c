"""What the daemon refuses is held in bounded memory until a flush() or exit says it, and counted exactly.

A run deleted mid-training (``MlflowClient.delete_run``, as a user in the UI) has each of its
metric keys refused in every batch. A process that never calls flush() kept a sentence per key per
batch until it exited: 402 in 12 s for 2 keys, gigabytes a day for a job logging 20. The same item
is now named once, with how many points and times, and past 100 items the rest are counted only.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import Child, DaemonProcess, child_env
from mlflow.tracking import MlflowClient

from trackd import Client, DeliveryError

pytestmark = pytest.mark.timeout(120)

ROUNDS = 40
STEPS = 10  # a round's points of each key
NOT_ACTIVE = "must be in 'active' lifecycle_stage"


def times_refused(sentence: str) -> int:
    found = re.search(r", refused (\d+) times\): ", sentence)
    assert found is not None, sentence
    return int(found.group(1))


def test_a_key_refused_in_every_batch_is_named_once_and_every_refusal_counted(
    store: Path, client: Client, daemon: DaemonProcess,
) -> None:
    run_id = client.create_run().info.run_id
    client.log_metric(run_id, "warmup", 0.0)
    client.flush()
    MlflowClient(tracking_uri=f"file:{store}").delete_run(run_id)
    keys = ("loss", "acc", "lr")
    for round_ in range(ROUNDS):
        for step in range(round_ * STEPS, (round_ + 1) * STEPS):
            for key in keys:
                client.log_metric(run_id, key, float(step), step=step)
        client.get_run(run_id)  # a read waits for the daemon and leaves the refusals for flush()
    with pytest.raises(DeliveryError) as caught:
        client.flush()
    items = daemon.status()["items_rejected"]
    assert items >= ROUNDS * len(keys)  # a batch a round at least, each refusing each key
    points = ROUNDS * STEPS
    assert str(caught.value).startswith(f"{items} logged items, {points * len(keys)} events, will not be written: metric '")
    # This used to be a sentence for each refusal, the same three said over and over.
    failures = caught.value.failures
    assert len(failures) == len(keys), failures
    named = {failure.split("'")[1] for failure in failures}
    assert named == set(keys), failures
    for failure in failures:
        assert f" of run {run_id} ({points} points, refused " in failure and NOT_ACTIVE in failure, failure
    assert sum(times_refused(failure) for failure in failures) == items
    assert str(caught.value).endswith(f"(and {items - times_refused(failures[0])} more)"), caught.value
    assert client.stats()["rejected"] == points * len(keys)


def test_past_100_items_refused_the_rest_are_counted_not_listed(store: Path, client: Client, daemon: DaemonProcess) -> None:
    run_id = client.create_run().info.run_id
    client.flush()
    MlflowClient(tracking_uri=f"file:{store}").delete_run(run_id)
    for key in range(150):
        client.log_metric(run_id, f"k{key:03}", 1.0)
    with pytest.raises(DeliveryError) as caught:
        client.flush()
    assert daemon.status()["items_rejected"] == 150
    assert str(caught.value).startswith("150 logged items, 150 events, will not be written: metric 'k"), caught.value
    assert str(caught.value).endswith(f"{NOT_ACTIVE}. (and 149 more)"), caught.value
    # This used to list all 150, and as many more as a job went on to have refused.
    failures = caught.value.failures
    assert len(failures) == 101, failures
    assert len({failure for failure in failures[:100] if failure.startswith("metric 'k")}) == 100, failures
    assert failures[100] == "... and 50 more refused items (50 events) not listed", failures


# argv: none. Deletes its own run (as a user in the UI would) and logs on without calling flush().
NEVER_FLUSHES = f"""
import trackd
from mlflow.tracking import MlflowClient
run = trackd.start_run()
trackd.log_metric("warmup", 0.0)
trackd.flush()
MlflowClient(trackd.get_tracking_uri()).delete_run(run.info.run_id)
for round_ in range({ROUNDS}):
    for step in range(round_ * {STEPS}, (round_ + 1) * {STEPS}):
        trackd.log_metric("x", float(step), step=step)
        trackd.log_metric("y", float(step), step=step)
    trackd.get_run(run.info.run_id)
print("logged", run.info.run_id, flush=True)
"""


def test_exit_counts_every_refusal_of_a_job_that_never_flushes_naming_each_key_once(
    store: Path, daemon: DaemonProcess,
) -> None:
    env = child_env(daemon.paths.socket, TRACKD_AUTOSTART="0", TRACKD_TRACKING_URI=str(store))
    with Child(NEVER_FLUSHES, [], env) as child:
        assert child.wait(60) == 0, child.stderr()
    run_id = child.out[-1].split()[-1]
    said = [line for line in child.err if line.startswith("trackd: ")]
    assert len(said) == 2, said
    warned = re.match(rf"trackd: the daemon refused metric '(x|y)' of run {run_id} ", said[0])
    assert warned is not None, said
    other = "y" if warned.group(1) == "x" else "x"
    status = daemon.status()
    items, events = status["items_rejected"], status["events_rejected"]
    # Every point logged after the deletion, and the run's end at exit, refused too.
    assert events == 2 * ROUNDS * STEPS + 1, status
    head = f"trackd: {items} logged items, {events} events, will not be written: "
    assert said[1].startswith(f"{head}metric '{other}' of run {run_id} ({ROUNDS * STEPS} points, refused "), said
    assert said[1].endswith(f" (and {items - times_refused(said[1])} more, one of them warned of above)"), said
    assert f"metric '{warned.group(1)}'" not in said[1], said  # named once on stderr: by the warning


# argv: store, run id (deleted). Logs one key to it in rounds, without calling flush().
ONE_KEY = f"""
import sys
import trackd
client = trackd.Client(sys.argv[1])
for round_ in range({ROUNDS}):
    for step in range(round_ * {STEPS}, (round_ + 1) * {STEPS}):
        client.log_metric(sys.argv[2], "x", float(step), step=step)
    client.get_run(sys.argv[2])
"""


def test_exit_counts_the_refusals_of_the_one_item_the_warning_named_without_naming_it_again(
    store: Path, client: Client, daemon: DaemonProcess,
) -> None:
    run_id = client.create_run().info.run_id
    client.flush()
    MlflowClient(tracking_uri=f"file:{store}").delete_run(run_id)
    with Child(ONE_KEY, [str(store), run_id], child_env(daemon.paths.socket, TRACKD_AUTOSTART="0")) as child:
        assert child.wait(60) == 0, child.stderr()
    said = [line for line in child.err if line.startswith("trackd: ")]
    assert len(said) == 2 and said[0].startswith(f"trackd: the daemon refused metric 'x' of run {run_id} "), said
    # The item counts its points once: "(10 points) (10 events)" said it twice. (A first batch of
    # one point, which the client connected as it was made sends at once, is "(1 event)".)
    assert re.match(rf"trackd: the daemon refused metric 'x' of run {run_id} \((\d+ points|1 event)\): ", said[0]), said
    assert not re.search(r"points\) \(\d+ events?\)", said[0]), said
    items = daemon.status()["items_rejected"]
    assert items >= ROUNDS
    assert said[1] == (
        f"trackd: {items} logged items, {ROUNDS * STEPS} events, will not be written: the refusal warned of above, "
        f"and {items - 1} more of that item for the same reason."
    ), said
