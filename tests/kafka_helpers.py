"""Small helpers for integration tests: put real packets on a topic, read a topic to its end."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from confluent_kafka import Producer

from stream.kafka_clients import TopicRecord, read_topic  # noqa: F401 - re-exported for tests


def produce_values(bootstrap: str, topic: str, values: Iterable[tuple[bytes | None, bytes]]) -> int:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5,
                         "message.max.bytes": 10485760})  # as the service's producer: raw frames are MBs
    n = 0
    for key, value in values:
        producer.produce(topic, value, key=key)
        n += 1
        producer.poll(0)
    assert producer.flush(30) == 0, "test producer could not deliver every message"
    return n


def produce_files(bootstrap: str, topic: str, paths: Iterable[Path]) -> int:
    return produce_values(bootstrap, topic, ((p.stem.encode(), p.read_bytes()) for p in paths))
