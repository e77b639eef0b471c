"""Value classes without the dataclasses module: what a client process builds at start.

A client builds two dozen value classes (the protocol's events, the run entities, its config).
As dataclasses they cost every process ~21 ms of its start, measured here: importing dataclasses,
which imports inspect, ast, dis and tokenize (~7 ms, ~1.6 MB of RSS), and generating each class's
methods with exec (~0.6 ms a class). A benchmark suite starts hundreds of short processes.

So such a class lists its fields in ``__slots__``, in order, and writes its ``__init__`` (keyword
arguments, checked there). ``Value`` gives it a repr and equality over those fields; ``Frozen``
also refuses assignment after ``__init__`` (which sets fields with ``object.__setattr__``, as a
frozen dataclass does), hashes, copies and pickles.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

F = TypeVar("F", bound="Frozen")


class Value:
    """repr and equality over every name in ``__slots__``, from the base classes down."""

    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()
    # Fields __init__ computes rather than takes (Batch.events): left out of repr and the wire.
    _derived: ClassVar[frozenset[str]] = frozenset()
    __match_args__: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        names: list[str] = []
        for klass in reversed(cls.__mro__):
            slots = klass.__dict__.get("__slots__", ())
            names.extend((slots,) if isinstance(slots, str) else slots)
        cls._fields = tuple(names)
        # For match statements, as a dataclass has: the fields __init__ takes, in order.
        setattr(cls, "__match_args__", tuple(name for name in names if name not in cls._derived))

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields if name not in self._derived)
        return f"{type(self).__name__}({shown})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        # Tuples, as a dataclass compares: a field holding the same NaN object equals itself.
        return self._values() == other._values()

    def __reduce__(self) -> tuple[Any, ...]:
        # copy, deepcopy and pickle (every protocol) rebuild it field by field, as __init__ left it.
        return (_rebuild, (type(self), self._values()))

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._fields)


class Frozen(Value):
    """A Value whose fields cannot change once ``__init__`` has set them."""

    __slots__ = ()

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r}: a {type(self).__name__} is frozen")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}: a {type(self).__name__} is frozen")

    def __hash__(self) -> int:
        return hash(self._values())

    def replace(self: F, **changes: Any) -> F:
        """A copy with ``changes`` to some fields, made by ``__init__`` (checked, derived fields
        computed again), as dataclasses.replace makes it."""
        given = [name for name in self._fields if name not in self._derived]
        unknown = set(changes) - set(given)
        if unknown:
            raise TypeError(f"{type(self).__name__}.replace() takes no field {sorted(unknown)[0]!r}")
        return type(self)(**{name: changes.get(name, getattr(self, name)) for name in given})


V = TypeVar("V", bound=Value)


def _rebuild(cls: type[V], values: tuple[Any, ...]) -> V:
    instance = object.__new__(cls)
    for name, value in zip(cls._fields, values):
        object.__setattr__(instance, name, value)
    return instance
