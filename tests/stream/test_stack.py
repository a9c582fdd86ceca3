"""The embedded stack really serves Kafka and Redis, and stops cleanly."""
from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Consumer, Producer

pytestmark = pytest.mark.integration


def test_produce_consume_and_redis_roundtrip(services, unique_name):
    import redis

    from stream.stack import create_topics

    topic = f"{unique_name}-topic"
    create_topics(services.bootstrap_servers, [topic], partitions=2)
    producer = Producer({"bootstrap.servers": services.bootstrap_servers, "enable.idempotence": True})
    payloads = [f"msg-{i}".encode() for i in range(10)]
    for p in payloads:
        producer.produce(topic, p, key=p)
    assert producer.flush(10) == 0

    consumer = Consumer({
        "bootstrap.servers": services.bootstrap_servers, "group.id": unique_name,
        "auto.offset.reset": "earliest", "enable.auto.commit": False,
        "partition.assignment.strategy": services.assignment_strategy, "session.timeout.ms": 6000,
    })
    consumer.subscribe([topic])
    got = []
    try:
        for _ in range(200):
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                if len(got) == len(payloads):
                    break
                continue
            got.append(msg.value())
            if len(got) == len(payloads):
                break
    finally:
        consumer.close()
    assert sorted(got) == sorted(payloads)

    r = redis.Redis.from_url(services.redis_url)
    key = f"{unique_name}:{uuid.uuid4().hex}"
    assert r.set(key, b"1", nx=True, ex=60)
    assert not r.set(key, b"1", nx=True, ex=60)


def test_stack_stops_its_processes():
    from stream.stack import EmbeddedStack

    stack = EmbeddedStack().start()
    procs = list(stack._procs.values())
    assert all(p.poll() is None for p in procs)
    stack.stop()
    assert all(p.poll() is not None for p in procs)
