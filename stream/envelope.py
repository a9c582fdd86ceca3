"""The envelope: one consumed message detached from the Kafka client, and what it decodes to.

:class:`Envelope` carries a message's coordinates and bytes through the stages;
:class:`DecodeOutcome` is what its value decoded to (items, or a reason for the dead-letter
topic). Around them, the pure steps before the stages: :func:`decode_values` (message values
to outcomes, in a decode worker) and :func:`dedup_candidates` (an envelope's items split into
fresh and duplicates); :class:`StageTimer` adds up a batch's seconds per stage. No Kafka, no
Redis: :mod:`stream.stages` and :mod:`stream.service` use them.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from schemas.alert import Item
from schemas.decode.errors import DecodeError
from schemas.decode.limits import DecodeSettings
from schemas.pickling import fast_pickle

__all__ = ["Envelope", "DecodeOutcome", "decode_values", "dedup_candidates", "StageTimer"]

@dataclass(frozen=True, slots=True)
class Envelope:
    """One consumed Kafka message, detached from the client (safe to keep after a rebalance)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None


@fast_pickle
@dataclass(frozen=True, slots=True)
class DecodeOutcome:
    """What one message decoded to: items, or a reason code and detail for the dead-letter topic."""

    items: tuple[Item, ...] = ()
    reason: str | None = None
    detail: str = ""
    record_index: int | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None


_RESOLVERS: dict[str, Any] = {}


def _resolver(schema_registry_url: Any) -> Any:
    """One schema resolver per process and registry URL (its cache of Rubin schemas outlives a batch);
    the service passes the answers it looked up itself (``stream.schema_registry.PrefetchedSchemas``)."""
    if not isinstance(schema_registry_url, str):
        return schema_registry_url.resolver()
    resolver = _RESOLVERS.get(schema_registry_url)
    if resolver is None:
        from stream.schema_registry import resolver_for

        resolver = _RESOLVERS[schema_registry_url] = resolver_for(schema_registry_url)
    return resolver


def decode_values(values: Sequence[bytes | None], settings: DecodeSettings, schema_registry_url: str = "") -> tuple[list[DecodeOutcome], float]:
    """Decode message values (runs in a worker process). Returns the outcomes and seconds spent.

    Every value ends as items or a reason: a decoder bug surfaces as ``internal_error`` on the
    dead-letter topic with the exception text rather than killing the batch. An unreachable
    schema registry is our fault, not the message's: it raises, and the batch is not committed.
    """
    from schemas.decode import SchemaRegistryError, decode_message

    t0 = time.perf_counter()
    resolver = _resolver(schema_registry_url)
    out: list[DecodeOutcome] = []
    for value in values:
        if not value:
            out.append(DecodeOutcome(reason="empty", detail="message has no value"))
            continue
        try:
            items = decode_message(value, settings=settings, resolver=resolver)
        except DecodeError as exc:
            out.append(DecodeOutcome(reason=exc.reason.value, detail=exc.detail, record_index=exc.record_index))
            continue
        except (SchemaRegistryError, MemoryError):
            raise  # our fault / the watchdog's business (stream.decode_pool), not the message's
        except Exception as exc:  # noqa: BLE001 - a decoder bug must not lose the message
            out.append(DecodeOutcome(reason="internal_error", detail=f"{type(exc).__name__}: {exc}"))
            continue
        if not items:
            out.append(DecodeOutcome(reason="empty", detail="container holds no records"))
        else:
            out.append(DecodeOutcome(items=tuple(items)))
    return out, time.perf_counter() - t0


def dedup_candidates(
    items: Sequence[tuple[Envelope, Item]], already_published: set[str],
) -> tuple[list[tuple[Envelope, Item]], list[tuple[Envelope, Item]]]:
    """Split into (to classify, duplicates): published before, or a second copy in this batch."""
    fresh: list[tuple[Envelope, Item]] = []
    dups: list[tuple[Envelope, Item]] = []
    seen: set[str] = set()
    for env, item in items:
        key = item.key
        if key in already_published or key in seen:
            dups.append((env, item))
        else:
            seen.add(key)
            fresh.append((env, item))
    return fresh, dups


@dataclass
class StageTimer:
    """Accumulates seconds per stage for one batch."""

    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, stage: str, dt: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + dt

    def time(self, stage: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        try:
            return fn()
        finally:
            self.add(stage, time.perf_counter() - t0)
