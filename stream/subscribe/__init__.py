"""Reading classified topics: filters (pure), a typed-record reader and output writers.

``from stream.subscribe import subscribe`` is the notebook API; see :mod:`stream.subscribe.reader`.
Kafka is imported only by :mod:`stream.subscribe.reader`, on first use of these names.
"""
from __future__ import annotations

from typing import Any

__all__ = ["subscribe", "ClassifiedRecord", "ModelScores", "SubscribeError"]


def __getattr__(name: str) -> Any:  # lazy: `import stream.subscribe.filters` needs no Kafka client
    if name in __all__:
        from stream.subscribe import reader

        return getattr(reader, name)
    raise AttributeError(name)
