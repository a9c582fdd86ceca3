"""Kafka client configuration and the small helpers around producing.

Configs are built as fresh dicts from the frozen settings (never edited in place). The
producer is idempotent with ``acks=all``; :func:`flush_or_raise` fails loudly when anything is
left undelivered, so offsets are only committed after the broker has every output.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from stream.config import KafkaSettings
from stream.kafka_logs import with_client_logger

__all__ = [
    "Publisher", "Committer", "produce_retrying",
    "PublishError", "consumer_config", "producer_config", "make_consumer", "DeliveryTracker", "flush_or_raise", "commit_or_raise",
    "CommitError", "TopicRecord", "read_topic",
]


class Publisher(Protocol):
    """The part of a Kafka ``Producer`` the publish stage uses."""

    def produce(self, topic: str, value: bytes | None = ..., *, key: bytes | None = ..., headers: Any = ...,
                on_delivery: Callable[..., None] | None = ..., timestamp: int = ...) -> None: ...

    def poll(self, timeout: float) -> int: ...

    def flush(self, timeout: float) -> int: ...


class Committer(Protocol):
    """The part of a Kafka ``Consumer`` the commit stage uses (a synchronous commit)."""

    def commit(self, *, offsets: list[TopicPartition], asynchronous: Literal[False]) -> list[TopicPartition]: ...


class PublishError(RuntimeError):
    """The broker did not acknowledge every output record; nothing of the batch is committed."""


class CommitError(RuntimeError):
    """A partition's offset commit failed for a reason other than losing the partition."""


#: Tunable defaults: a ``kafka.client`` property of the same name wins over these.
CONSUMER_DEFAULTS: dict[str, Any] = {
    "max.poll.interval.ms": 600000,        # a Redis outage may hold a batch for minutes
    "fetch.max.bytes": 52428800,
    "max.partition.fetch.bytes": 10485760,
}
PRODUCER_DEFAULTS: dict[str, Any] = {
    "linger.ms": 5,
    "compression.type": "lz4",
    "message.max.bytes": 10485760,         # raw HST frames need more: raise it with the broker's limit
    "delivery.timeout.ms": 120000,         # librdkafka retries a broker outage this long
}


def consumer_config(settings: KafkaSettings, **overrides: Any) -> dict[str, Any]:
    conf = {**CONSUMER_DEFAULTS, **settings.common_config()}
    conf.update({                              # what the delivery guarantee rests on: not overridable
        "group.id": settings.group_id,
        "enable.auto.commit": False,           # offsets only after output is acknowledged
        "enable.auto.offset.store": False,
        "auto.offset.reset": settings.auto_offset_reset,
        "partition.assignment.strategy": settings.assignment_strategy,
        "session.timeout.ms": settings.session_timeout_ms,
        "allow.auto.create.topics": False,
    })
    conf.update(overrides)
    return with_client_logger(conf)


def producer_config(settings: KafkaSettings, **overrides: Any) -> dict[str, Any]:
    conf = {**PRODUCER_DEFAULTS, **settings.common_config()}
    conf.update({
        "enable.idempotence": True,            # implies acks=all and safe retries
        "acks": "all",
    })
    # client passthrough keys that are consumer-only would make the producer warn; keep them out
    for key in ("group.id", "auto.offset.reset", "enable.auto.commit"):
        conf.pop(key, None)
    conf.update(overrides)
    return with_client_logger(conf)


def make_consumer(settings: KafkaSettings, **overrides: Any) -> Consumer:
    return Consumer(consumer_config(settings, **overrides))


class DeliveryTracker:
    """Collects delivery reports of one batch: what was acknowledged, and any error."""

    def __init__(self) -> None:
        self.delivered: dict[Any, Message] = {}
        self.errors: list[str] = []

    def callback_for(self, token: Any):
        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                self.errors.append(f"{msg.topic()}: {err}")
            else:
                self.delivered[token] = msg
        return on_delivery


def produce_retrying(producer: Publisher, topic: str, value: bytes | None, *, key: bytes | None = None,
                     headers: Any = None, on_delivery: Callable[..., None] | None = None, timestamp: int | None = None,
                     wait_s: float = 0.1) -> None:
    """Produce one record. While librdkafka's local queue is full (``BufferError``), serve delivery
    reports for up to ``wait_s`` (``poll``), which frees room, and try again. Any other error raises."""
    while True:
        try:
            if timestamp is None:
                producer.produce(topic, value, key=key, headers=headers, on_delivery=on_delivery)
            else:
                producer.produce(topic, value, key=key, headers=headers, on_delivery=on_delivery, timestamp=timestamp)
            return
        except BufferError:
            producer.poll(wait_s)


def flush_or_raise(producer: Publisher, tracker: DeliveryTracker, expected: int, timeout_s: float) -> None:
    """Wait for every delivery report; raise :class:`PublishError` if any record is unacknowledged."""
    left = producer.flush(timeout_s)
    if left or tracker.errors or len(tracker.delivered) != expected:
        raise PublishError(
            f"{left} record(s) still queued, {len(tracker.errors)} failed, "
            f"{len(tracker.delivered)}/{expected} acknowledged; first error: {tracker.errors[:1]}"
        )


def commit_or_raise(consumer: Committer, offsets: Iterable[TopicPartition]) -> list[TopicPartition]:
    """Commit synchronously and check each partition's result.

    Returns the partitions whose commit was refused because the partition moved to another member
    (its new owner resumes from the last committed offset; our Redis marks keep it from
    publishing twice). Any other failure raises :class:`CommitError`.
    """
    offsets = list(offsets)
    if not offsets:
        return []
    lost: list[TopicPartition] = []
    try:
        result = consumer.commit(offsets=offsets, asynchronous=False)
    except Exception as exc:
        code = exc.args[0].code() if exc.args and hasattr(exc.args[0], "code") else None
        if code in (KafkaError.REBALANCE_IN_PROGRESS, KafkaError.ILLEGAL_GENERATION, KafkaError.UNKNOWN_MEMBER_ID,
                    KafkaError._NO_OFFSET, KafkaError.FENCED_INSTANCE_ID):
            return offsets
        raise CommitError(f"offset commit failed: {exc}") from exc
    for tp in result or []:
        if tp.error is not None:
            if tp.error.code() in (KafkaError.REBALANCE_IN_PROGRESS, KafkaError.ILLEGAL_GENERATION, KafkaError.UNKNOWN_MEMBER_ID):
                lost.append(tp)
            else:
                raise CommitError(f"commit of {tp.topic}[{tp.partition}] failed: {tp.error}")
    return lost


def _headers(msg: Message) -> dict[str, Any]:
    """A message's headers as a dict (librdkafka gives a list of (name, bytes) pairs)."""
    headers = msg.headers() or []
    return dict(headers.items() if isinstance(headers, dict) else headers)


@dataclass(frozen=True)
class TopicRecord:
    """One message read back from a topic."""

    key: bytes | None
    value: bytes | None
    headers: dict[str, Any]
    partition: int | None
    offset: int | None
    timestamp_ms: int


def read_topic(bootstrap: str, topic: str, *, expect: int | None = None, timeout_s: float = 30.0, idle_s: float = 3.0) -> list[TopicRecord]:
    """Everything on ``topic`` (all partitions, from the start), by manual assignment.

    Stops once ``expect`` records are read and 0.5 s passes without another (so an extra,
    duplicate record is still seen), or without ``expect`` after ``idle_s`` with no new record,
    or at ``timeout_s``. For tests, the demo and tools; not used on the service's hot path.
    """
    consumer = Consumer(with_client_logger({"bootstrap.servers": bootstrap, "group.id": f"reader-{time.time_ns()}",
                                            "enable.auto.commit": False, "auto.offset.reset": "earliest",
                                            "enable.partition.eof": True}))
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        parts = sorted(meta.partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        out: list[TopicRecord] = []
        deadline = time.monotonic() + timeout_s
        last_new = time.monotonic()
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                if expect is None and time.monotonic() - last_new > idle_s:
                    break
                if expect is not None and len(out) >= expect and time.monotonic() - last_new > 0.5:
                    break
                continue
            out.append(TopicRecord(msg.key(), msg.value(), _headers(msg),
                                   msg.partition(), msg.offset(), msg.timestamp()[1]))
            last_new = time.monotonic()
        return out
    finally:
        consumer.close()
