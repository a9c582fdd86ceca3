"""Fast pickling for the frozen slots dataclasses that cross process boundaries.

``@dataclass(frozen=True, slots=True)`` pickles through ``dataclasses._dataclass_getstate`` and
``_dataclass_setstate``, which call ``dataclasses.fields()`` on every object. The decode pool
hands every decoded message from a worker process to the service as a pickle (an outcome, an
alert, three stamps), and those calls were a third of the service's supervisor threads' CPU.
:func:`fast_pickle` gives a class the same state (its field values in field order) with the
field names worked out once.
"""
from __future__ import annotations

import dataclasses
import operator
from typing import Any, TypeVar

__all__ = ["fast_pickle"]

T = TypeVar("T")


def fast_pickle(cls: type[T]) -> type[T]:
    """Class decorator, above ``@dataclass(frozen=True, slots=True)``: state as a tuple of the
    field values, restored with ``object.__setattr__`` (the class is frozen)."""
    names = tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
    if not names:
        raise TypeError(f"{cls.__name__} has no fields to pickle")
    values = operator.attrgetter(*names)
    one = len(names) == 1

    def __getstate__(self: Any) -> tuple[Any, ...]:
        return (values(self),) if one else values(self)

    def __setstate__(self: Any, state: tuple[Any, ...]) -> None:
        for name, value in zip(names, state):
            object.__setattr__(self, name, value)

    target: Any = cls   # the methods dataclass(slots=True) put there are replaced
    target.__getstate__ = __getstate__
    target.__setstate__ = __setstate__
    return cls
