"""Fuzzing a real daemon: random and mutated frames from several connections beside a good client.

The daemon must never exit, the good client's points must all be written, and MLflow must read
the store afterwards. CI sends a few thousand frames; ``TRACKD_FUZZ_FRAMES=100000`` (``make fuzz``)
sends a hundred thousand from the seeded generators, plus hypothesis examples.

Safety of the machine running this: a mutated Hello may name any store root, and the daemon
creates a store wherever a same-uid client asks. So a mutated Hello is always sent alone and
followed by EOF (the daemon creates a store only on a Batch or an experiment request), and every
other payload follows a valid Hello naming the test's store.
"""

from __future__ import annotations

import os
import random
import socket
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import msgpack
import pytest
from helpers import DaemonProcess, create_run_record, metric_lines
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trackd
from trackd.client import ClientConfig
from trackd.errors import TrackdError
from trackd.protocol import MAX_FRAME_SIZE, PROTOCOL_VERSION, RecordKind

pytestmark = pytest.mark.timeout(900)

FRAMES = int(os.environ.get("TRACKD_FUZZ_FRAMES", "3000"))
FUZZ_THREADS = 3
GOOD_POINTS = 20_000
SEED = 20240611
TS = 1_700_000_000_000


def frame(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


def hello_frame(store: Path, client_id: str) -> bytes:
    return frame(msgpack.packb([1, PROTOCOL_VERSION, client_id, os.getpid(), "fuzz", str(store)], use_bin_type=True))


def template_batches(run_id: str) -> list[bytes]:
    """Valid Batch frames to mutate: every record kind, in the fuzzers' own run."""
    records = [
        create_run_record(run_id),
        (RecordKind.METRIC.value, run_id, "loss", 0.25, TS, 3),
        (RecordKind.METRIC.value, run_id, "nested/acc", float("nan"), TS, 4),
        (RecordKind.METRIC_SERIES.value, run_id, "grad", (0.5, 7, float("inf")), (TS, TS, TS + 1), (0, 1, 2)),
        (RecordKind.PARAM.value, run_id, "lr", "0.1"),
        (RecordKind.TAG.value, run_id, "team", "fuzz"),
        (RecordKind.DELETE_TAG.value, run_id, "gone"),
        (RecordKind.ARTIFACT.value, run_id, "notes/a.txt", b"hello", None),
        (RecordKind.SET_TERMINATED.value, run_id, 3, TS + 5, False),
    ]
    frames = [frame(msgpack.packb([3, 1, [record]], use_bin_type=True)) for record in records]
    frames.append(frame(msgpack.packb([3, 1, records], use_bin_type=True)))
    # No GetExperiment(create=True) template: its mutated names create a new experiment each, and
    # every experiment lookup reads all of them (MLflow's FileStore layout), so 100,000 frames
    # would measure that quadratic cost instead of the daemon's robustness (docs/security.md).
    frames += [frame(msgpack.packb(body, use_bin_type=True)) for body in ([5, 1], [8, 1, "Default", False], [12, 1], [14, 7])]
    return frames


def mutate(rng: random.Random, data: bytes) -> bytes:
    """Flip, insert, delete, duplicate or cut bytes (header included), one to four times."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        position = rng.randrange(max(len(out), 1))
        operation = rng.randrange(5)
        if operation == 0 and out:
            out[position] ^= rng.randint(1, 255)
        elif operation == 1:
            out[position:position] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        elif operation == 2 and out:
            del out[position:position + rng.randint(1, 4)]
        elif operation == 3:
            out[position:position] = out[position:position + rng.randint(1, 16)]
        else:
            del out[position:]
    return bytes(out)


def random_value(rng: random.Random, depth: int = 0) -> object:
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, 1, -1, 2**31, 2**63 - 1, -(2**63), 2**64 - 1, rng.randrange(-1000, 1000)])
    if kind == 3:
        return rng.choice([0.0, -0.0, float("nan"), float("inf"), 1e308, rng.random()])
    if kind == 4:
        return rng.choice(["", "loss", "a\nb", "..", "../x", "/abs", "\x00", "é", "k" * rng.randint(0, 2000)])
    if kind == 5:
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 16)))
    if kind == 6:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 7))]
    if kind == 7:
        return {str(random_value(rng, depth + 1))[:8]: random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    return msgpack.ExtType(rng.randrange(128), b"x")


def random_payload(rng: random.Random, templates: list[bytes], hello: bytes) -> tuple[bool, bytes]:
    """(send after a valid Hello?, bytes): the kinds of input the brief lists, in proportion."""
    kind = rng.randrange(8)
    if kind == 0:
        return False, mutate(rng, hello)  # alone: see the module docstring
    if kind in (1, 2, 3):
        return True, mutate(rng, rng.choice(templates))
    if kind == 4:
        code = rng.choice([1, 3, 5, 7, 8, 12, 14, rng.randrange(-5, 300)])
        fields = [random_value(rng) for _ in range(rng.randint(0, 6))]
        try:
            return True, frame(msgpack.packb([code, *fields], use_bin_type=True))
        except (OverflowError, ValueError, TypeError):
            return True, b""
    if kind == 5:
        kinds = [rng.randrange(10) for _ in range(rng.randint(1, 4))]
        records = [[k, *(random_value(rng) for _ in range(rng.randint(0, 7)))] for k in kinds]
        try:
            return True, frame(msgpack.packb([3, rng.randrange(1, 9), records], use_bin_type=True))
        except (OverflowError, ValueError, TypeError):
            return True, b""
    if kind == 6:
        # Oversized, truncated and lying headers.
        return True, rng.choice([
            (MAX_FRAME_SIZE + rng.randint(1, 2**20)).to_bytes(4, "big"),
            b"\xff\xff\xff\xff",
            b"\x00\x00",
            (1000).to_bytes(4, "big") + b"\x93\x03",
            (0).to_bytes(4, "big"),
        ])
    return True, bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))


def send_payload(socket_path: Path, prefix: bytes, payload: bytes) -> None:
    """One connection: optional Hello, the payload, EOF; read until the daemon closes (bounded)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    try:
        sock.connect(str(socket_path))
        try:
            sock.sendall(prefix + payload)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the daemon already closed a connection that broke the protocol
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    finally:
        sock.close()


def seeded_fuzzer(socket_path: Path, store: Path, seed: int, frames: int, sent: list[int]) -> None:
    rng = random.Random(seed)
    templates = template_batches(uuid.UUID(int=rng.getrandbits(128)).hex)
    for number in range(frames):
        client_id = f"fuzz-{seed}-{number}"
        after_hello, payload = random_payload(rng, templates, hello_frame(store, client_id))
        send_payload(socket_path, hello_frame(store, client_id) if after_hello else b"", payload)
        sent[0] += 1


def good_client(socket_path: Path, store: Path, result: dict[str, object]) -> None:
    config = ClientConfig(socket_path=socket_path, autostart=False, connect_timeout=5.0)
    with trackd.Client(str(store), config=config) as client:
        run_id = client.create_run("0").info.run_id
        result["run_id"] = run_id
        for step in range(GOOD_POINTS):
            client.log_metric(run_id, "good", step * 0.5, step=step)
            if step % 2000 == 0:
                client.flush(timeout=60)
        report = client.flush(timeout=60)
        result["report"] = report


def check_mlflow_reads(store: Path, good_run_id: str) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store.as_uri())
    history = client.get_metric_history(good_run_id, "good")
    assert sorted(m.step for m in history) == list(range(GOOD_POINTS))
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, max_results=1000)
    assert good_run_id in {run.info.run_id for run in runs}
    for run in runs[:200]:
        fetched = client.get_run(run.info.run_id)
        for key in fetched.data.metrics:
            client.get_metric_history(run.info.run_id, key)


def test_daemon_survives_fuzzed_frames_while_a_good_client_streams(daemon: DaemonProcess, store: Path) -> None:
    socket_path = daemon.paths.socket
    good: dict[str, object] = {}
    counters = [[0] for _ in range(FUZZ_THREADS)]
    threads = [threading.Thread(target=good_client, args=(socket_path, store, good), name="good-client")]
    threads += [
        threading.Thread(target=seeded_fuzzer, args=(socket_path, store, SEED + i, FRAMES // FUZZ_THREADS, counters[i]), name=f"fuzz-{i}")
        for i in range(FUZZ_THREADS)
    ]
    for thread in threads:
        thread.start()
    hypothesis_sent = run_hypothesis_fuzzer(socket_path, store)
    for thread in threads:
        thread.join(timeout=600)
        assert not thread.is_alive(), f"{thread.name} did not finish within 600 s"
    sent = sum(c[0] for c in counters) + hypothesis_sent
    assert sent >= FRAMES
    assert daemon.process is not None and daemon.process.poll() is None, daemon.log()[-3000:]
    try:
        status = daemon.status()
    except TrackdError as exc:
        raise AssertionError(f"the daemon does not answer a status query ({exc}); its log ends: {daemon.log()[-3000:]}") from exc
    assert status["protocol_errors"] > 0
    # Every bad input was handled as one: nothing escaped into asyncio's "exception never retrieved".
    assert "Traceback" not in daemon.log(), daemon.log()[-5000:]
    run_id = good["run_id"]
    assert isinstance(run_id, str), good
    steps = [int(line.split()[2]) for line in metric_lines(store, run_id, "good")]
    assert steps == list(range(GOOD_POINTS))
    check_mlflow_reads(store, run_id)


# -- hypothesis: the same kinds of input, shrinkable ---------------------------------------------

HYPOTHESIS_EXAMPLES = max(100, FRAMES // 30)
msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1) | st.floats()
    | st.text(max_size=20) | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=20,
)
event_codes = st.sampled_from([1, 3, 5, 7, 8, 12, 14]) | st.integers(min_value=-5, max_value=300)


def run_hypothesis_fuzzer(socket_path: Path, store: Path) -> int:
    """Send HYPOTHESIS_EXAMPLES generated payloads, each on its own connection after a valid Hello."""
    sent = [0]
    templates = template_batches(uuid.uuid4().hex)

    def connect_and_send(payload: bytes) -> None:
        send_payload(socket_path, hello_frame(store, f"hyp-{uuid.uuid4().hex}"), payload)
        sent[0] += 1

    config = settings(
        max_examples=HYPOTHESIS_EXAMPLES, deadline=None, database=None, derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )

    @config
    @given(event_codes, st.lists(msgpack_values, max_size=6))
    def random_events(code: int, fields: list[object]) -> None:
        connect_and_send(frame(msgpack.packb([code, *fields], use_bin_type=True)))

    @config
    @given(st.sampled_from(templates), st.randoms(use_true_random=False))
    def mutated_templates(template: bytes, rng: random.Random) -> None:
        connect_and_send(mutate(rng, template))

    @config
    @given(st.binary(max_size=200))
    def random_bytes(data: bytes) -> None:
        connect_and_send(data)

    runners: list[Callable[[], None]] = [random_events, mutated_templates, random_bytes]
    for runner in runners:
        runner()
    return sent[0]
