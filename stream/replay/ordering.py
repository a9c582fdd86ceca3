"""Observation-time order for replays at recorded cadence, without reading the archive twice.

Archives are rarely sorted by time (ZTF tarballs are in candid order, folders in name order).
:class:`TimeOrder` keeps a bounded read-ahead window (a heap of at most ``window`` messages)
and always releases the earliest message it holds, so any message out of place by fewer than
``window`` positions comes out in time order, with memory bounded by the window. A message
earlier than one already released (out of place by more than the window) is released at once
and counted in ``late``; it is never dropped. Unreadable entries and messages without an
observation time pass straight through.

It also tracks the observation-time span read so far (``span_days``): replay warns when an
archive covers more than one night (:data:`NIGHT_DAYS`), where the recorded cadence means
waiting out the daytime (or months between nights) unless ``--max-gap`` caps idle gaps.
"""
from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["TimeOrder", "NIGHT_DAYS", "DEFAULT_WINDOW"]

#: Longer than any one observing night (ZTF and Rubin nights last under 12 hours).
NIGHT_DAYS = 0.5
#: Messages held in the read-ahead window by default (ZTF alerts are ~60 kB: tens of MB).
DEFAULT_WINDOW = 1000


class TimeOrder:
    """Re-orders ``items`` (objects with ``observed_mjd``) by observation time within a window."""

    def __init__(self, items: Iterable[Any], window: int = DEFAULT_WINDOW) -> None:
        if window < 1:
            raise ValueError(f"the reorder window must be at least 1 message, got {window}")
        self._items = iter(items)
        self.window = window
        self.late = 0
        self.first_mjd: float | None = None
        self.last_mjd: float | None = None
        self._released: float | None = None

    @property
    def span_days(self) -> float:
        """Observation-time span of every message read so far (read-ahead included)."""
        if self.first_mjd is None or self.last_mjd is None:
            return 0.0
        return self.last_mjd - self.first_mjd

    def _seen(self, mjd: float) -> None:
        self.first_mjd = mjd if self.first_mjd is None else min(self.first_mjd, mjd)
        self.last_mjd = mjd if self.last_mjd is None else max(self.last_mjd, mjd)

    def _release(self, mjd: float, item: Any) -> Any:
        if self._released is not None and mjd < self._released:
            self.late += 1
        else:
            self._released = mjd
        return item

    def __iter__(self) -> Iterator[Any]:
        heap: list[tuple[float, int, Any]] = []
        counter = itertools.count()
        for item in self._items:
            mjd = getattr(item, "observed_mjd", None)
            if mjd is None:
                yield item
                continue
            self._seen(mjd)
            heapq.heappush(heap, (mjd, next(counter), item))
            if len(heap) > self.window:
                mjd0, _, first = heapq.heappop(heap)
                yield self._release(mjd0, first)
        while heap:
            mjd0, _, first = heapq.heappop(heap)
            yield self._release(mjd0, first)
