"""Value and Frozen: what the protocol's events, the run entities and the client's config rely on."""

from __future__ import annotations

import copy
import math
import pickle

import pytest

from trackd._struct import Frozen, Value
from trackd.protocol import Ack, Batch, Hello
from trackd.store import Metric, Run, RunData, RunInfo


class Point(Frozen):
    __slots__ = ("x", "y")
    x: int
    y: int

    def __init__(self, x: int, y: int) -> None:
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)


class Counter(Value):
    __slots__ = ("name", "count")

    def __init__(self, name: str, count: int = 0) -> None:
        self.name = name
        self.count = count


def test_fields_come_from_slots_in_order_and_show_in_repr() -> None:
    assert Point._fields == ("x", "y")
    assert repr(Point(1, 2)) == "Point(x=1, y=2)"
    assert repr(Ack(seq=3)) == "Ack(seq=3)"
    # A derived field is neither shown nor sent.
    assert repr(Batch(seq=1, records=[])) == "Batch(seq=1, records=[])"


def test_equality_and_hash_go_by_class_and_fields() -> None:
    assert Point(1, 2) == Point(1, 2) and hash(Point(1, 2)) == hash(Point(1, 2))
    assert Point(1, 2) != Point(2, 1)
    assert len({Point(1, 2), Point(1, 2), Point(0, 0)}) == 2
    assert Ack(seq=1) != Hello(protocol_version=1, client_id="c", pid=1, host="h", store_root="")
    assert Metric("m", 1.0, 0, 0) == Metric("m", 1.0, 0, 0)


def test_a_frozen_value_refuses_assignment_and_deletion() -> None:
    point = Point(1, 2)
    with pytest.raises(AttributeError, match="frozen"):
        point.x = 5
    with pytest.raises(AttributeError, match="frozen"):
        del point.y
    with pytest.raises(AttributeError):
        point.z = 1
    assert point == Point(1, 2)


def test_frozen_values_copy_and_pickle_as_they_are() -> None:
    info = RunInfo("a" * 32, "0", "run", "me", "RUNNING", 1, None, "file:///a", "active")
    run = Run(info=info, data=RunData(metrics={"m": 1.0}, params={}, tags={"t": "v"}))
    for clone in (copy.copy(run), copy.deepcopy(run), pickle.loads(pickle.dumps(run))):
        assert clone == run and clone.info.status == "RUNNING"
    assert pickle.loads(pickle.dumps(Batch(seq=2, records=[(1, "r", "k", 0.5, 1, 0)]))).events == 1


def test_replace_copies_through_init_and_names_an_unknown_field() -> None:
    point = Point(1, 2)
    assert point.replace(y=5) == Point(1, 5) and point == Point(1, 2)
    with pytest.raises(TypeError, match="no field 'z'"):
        point.replace(z=1)
    # Through __init__: a derived field is computed again, and cannot be given.
    batch = Batch(seq=1, records=[(1, "r", "k", 0.5, 1, 0)])
    assert batch.replace(records=[]).events == 0
    with pytest.raises(TypeError, match="no field 'events'"):
        batch.replace(events=5)


class Point3(Point):
    __slots__ = ("z",)
    z: int

    def __init__(self, x: int, y: int, z: int) -> None:
        super().__init__(x, y)
        object.__setattr__(self, "z", z)


def test_a_subclass_adds_its_fields_after_its_bases() -> None:
    assert Point3._fields == ("x", "y", "z") and Point3.__match_args__ == ("x", "y", "z")
    assert repr(Point3(1, 2, 3)) == "Point3(x=1, y=2, z=3)"
    assert Point3(1, 2, 3) != Point(1, 2)
    match Point3(1, 2, 3):
        case Point3(a, b, c):
            assert (a, b, c) == (1, 2, 3)


def test_a_field_holding_nan_equals_itself_as_a_dataclass_did() -> None:
    metric = Metric("m", math.nan, 0, 0)
    assert metric == metric and metric == copy.copy(metric)


def test_a_mutable_value_compares_by_fields_copies_and_is_not_hashable() -> None:
    counter = Counter("a")
    counter.count += 2
    assert counter == Counter("a", 2) and repr(counter) == "Counter(name='a', count=2)"
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        assert pickle.loads(pickle.dumps(counter, protocol)) == counter
    assert copy.deepcopy(counter) == counter
    with pytest.raises(TypeError):
        hash(counter)
