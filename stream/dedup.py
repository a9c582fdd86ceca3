"""Redis deduplication: which inputs were already classified and published.

Keys are ``<prefix><survey>:<alert id>``, set *after* the output record is acknowledged by the
broker, with a TTL longer than any replay window. A redelivered, replayed or upstream-duplicated
alert whose key exists is counted as a duplicate and not published again.

The value records where the output went (``topic/partition/offset``), so an operator can find
the record a duplicate was suppressed in favour of.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import redis
import structlog

__all__ = ["DedupUnavailable", "RedisDedup"]

log = structlog.get_logger(__name__)

#: Every error of the Redis client: unreachable, timed out, loading, but also refusing writes
#: (OOM under ``maxmemory``, MISCONF after a failed save, READONLY on a replica after a failover).
#: All are our fault, never the input's: the caller pauses and retries (crashing instead would
#: republish the batch on every restart).
_REDIS_DOWN = (redis.exceptions.RedisError,)


class DedupUnavailable(RuntimeError):
    """Redis could not be reached or refused the command; the caller pauses and retries (never
    skips the check silently). ``unreachable``: no answer at all (refused, reset, timed out,
    still loading), as against an answer that refuses the command (OOM, MISCONF, READONLY)."""

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


def _unavailable(what: str, exc: Exception) -> DedupUnavailable:
    unreachable = isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError))
    return DedupUnavailable(f"redis failed {what}: {type(exc).__name__}: {exc}", unreachable=unreachable)


class RedisDedup:
    """Published-marks in Redis. ``published(keys)`` before publishing, ``mark(...)`` after the ack."""

    def __init__(self, url: str, *, key_prefix: str, ttl_s: int, timeout_s: float = 2.0) -> None:
        if not url:
            raise ValueError("redis url is empty: set REDIS_URL or redis.url")
        self._client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, health_check_interval=10)
        self._prefix = key_prefix
        self._ttl_s = int(ttl_s)

    def _k(self, key: str) -> str:
        return self._prefix + key

    def ping(self) -> bool:
        try:
            return bool(self._client.ping())
        except _REDIS_DOWN:
            return False

    def published(self, keys: Sequence[str]) -> set[str]:
        """The subset of ``keys`` already marked as published."""
        if not keys:
            return set()
        try:
            values = self._client.mget([self._k(k) for k in keys])
        except _REDIS_DOWN as exc:
            raise _unavailable("the dedup check", exc) from exc
        return {k for k, v in zip(keys, values) if v is not None}

    def mark(self, destinations: Mapping[str, str]) -> None:
        """Mark keys as published; ``destinations`` maps key -> ``topic/partition/offset`` of the output."""
        if not destinations:
            return
        try:
            with self._client.pipeline(transaction=False) as pipe:
                for key, where in destinations.items():
                    pipe.set(self._k(key), where, ex=self._ttl_s)
                pipe.execute()
        except _REDIS_DOWN as exc:
            raise _unavailable("to mark published alerts", exc) from exc

    def forget(self, keys: Iterable[str]) -> int:
        """Remove marks (operators re-classifying after a model change use this)."""
        names = [self._k(k) for k in keys]
        return int(self._client.delete(*names)) if names else 0

    def close(self) -> None:
        self._client.close()
