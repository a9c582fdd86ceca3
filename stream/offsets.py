"""End offsets, committed offsets and lag per partition, from the broker (``subscribe``, ``status``).

A partition's end (its high watermark) is taken from a fetch response: a throw-away consumer is
assigned to each partition (at the group's committed offset where there is one, so little is
read) and polled until every partition has answered with a message or its end. That is right on
every broker: Tansu, the embedded broker, answers ListOffsets(latest) with a stale offset after
batched produce (1 for a partition holding 25 messages), while the watermark a fetch reports is
right. Nothing is committed and no group is joined.
"""
from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

__all__ = ["PartitionOffsets", "fetched_end_offsets", "fetched_watermarks", "topic_partitions", "OffsetsError"]


class OffsetsError(RuntimeError):
    """The broker did not answer what was asked (metadata, offsets) in time."""


@dataclass(frozen=True)
class PartitionOffsets:
    """Where a reader (or a consumer group) is in one partition, and the partition's end."""

    topic: str
    partition: int
    #: The next offset the reader or group will read (a group's committed offset); None: none yet.
    position: int | None
    #: The partition's high watermark (the offset the next message will get); None: not answered.
    end: int | None

    @property
    def lag(self) -> int | None:
        """Messages from ``position`` to the end; None when either is unknown."""
        if self.end is None or self.position is None:
            return None
        return max(0, self.end - self.position)

    def as_dict(self) -> dict[str, Any]:
        return {"topic": self.topic, "partition": self.partition, "position": self.position, "end": self.end, "lag": self.lag}


def topic_partitions(bootstrap_servers: str, topics: Iterable[str], client_config: Mapping[str, Any] | None = None,
                     timeout_s: float = 10.0) -> dict[str, list[int]]:
    """Partition ids of each topic (a missing topic: an empty list)."""
    consumer = Consumer(_conf(bootstrap_servers, client_config))
    try:
        meta = consumer.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise OffsetsError(f"cannot read the topics of {bootstrap_servers}: {exc}") from exc
    finally:
        consumer.close()
    out: dict[str, list[int]] = {}
    for topic in topics:
        info = meta.topics.get(topic)
        out[topic] = sorted(info.partitions) if info is not None and info.error is None else []
    return out


def _conf(bootstrap_servers: str, client_config: Mapping[str, Any] | None) -> dict[str, Any]:
    from stream.kafka_logs import client_logger

    conf: dict[str, Any] = {"bootstrap.servers": bootstrap_servers, "logger": client_logger()}
    conf.update(client_config or {})
    conf.update({"group.id": f"survey-classifier-offsets-{uuid.uuid4().hex[:12]}", "enable.auto.commit": False,
                 "enable.auto.offset.store": False, "enable.partition.eof": True, "auto.offset.reset": "earliest"})
    return conf


def fetched_end_offsets(bootstrap_servers: str, partitions: Iterable[tuple[str, int]], *,
                        start: Mapping[tuple[str, int], int] | None = None,
                        client_config: Mapping[str, Any] | None = None, timeout_s: float = 10.0) -> dict[tuple[str, int], int | None]:
    """The high watermark of each (topic, partition), as a fetch reports it (None: no answer in time).

    ``start``: where to fetch from in each partition (a committed offset: little is read); others
    are read from their beginning, one fetch each.
    """
    marks = fetched_watermarks(bootstrap_servers, partitions, start=start, client_config=client_config, timeout_s=timeout_s)
    return {key: (None if mark is None else mark[1]) for key, mark in marks.items()}


def fetched_watermarks(bootstrap_servers: str, partitions: Iterable[tuple[str, int]], *,
                       start: Mapping[tuple[str, int], int] | None = None, client_config: Mapping[str, Any] | None = None,
                       timeout_s: float = 10.0) -> dict[tuple[str, int], tuple[int, int] | None]:
    """(low, high) watermarks of each (topic, partition) from a fetch response; see :func:`fetched_end_offsets`."""
    wanted = list(dict.fromkeys(partitions))
    if not wanted:
        return {}
    start = start or {}
    consumer = Consumer(_conf(bootstrap_servers, client_config))
    answered: set[tuple[str, int]] = set()
    try:
        consumer.assign([TopicPartition(t, p, _from(start.get((t, p)))) for t, p in wanted])
        deadline = time.monotonic() + timeout_s
        while len(answered) < len(wanted) and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            err = msg.error()
            if err is not None and err.code() != KafkaError._PARTITION_EOF:
                if err.fatal() or not err.retriable():
                    raise OffsetsError(f"reading {msg.topic()}[{msg.partition()}] failed: {err}")
                continue
            answered.add((str(msg.topic()), cast(int, msg.partition())))
        marks: dict[tuple[str, int], tuple[int, int] | None] = {}
        for t, p in wanted:
            low, high = consumer.get_watermark_offsets(TopicPartition(t, p), cached=True) if (t, p) in answered else (-1, -1)
            marks[(t, p)] = (max(low, 0), high) if high >= 0 else None
        return marks
    finally:
        consumer.close()


def _from(offset: int | None) -> int:
    return offset if offset is not None and offset >= 0 else OFFSET_BEGINNING
