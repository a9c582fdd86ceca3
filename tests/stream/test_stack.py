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


def test_free_ports_are_distinct():
    from stream.stack import free_ports

    for _ in range(20):
        ports = free_ports(8)
        assert len(set(ports)) == 8


def _occupied_port():
    """A port held by a listener that accepts connections and never answers (as a broker answers a Redis PING)."""
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    return sock


def test_a_redis_port_taken_by_someone_else_fails_at_once_not_after_the_deadline():
    import time

    from stream.stack import EmbeddedStack, StackError

    holder = _occupied_port()
    try:
        started = time.monotonic()
        with pytest.raises(StackError, match="redis exited at start"):
            EmbeddedStack(redis_port=holder.getsockname()[1]).start()
        assert time.monotonic() - started < 20  # the old wait read a silent socket for the full 30 s
    finally:
        holder.close()


def test_picked_ports_taken_before_the_servers_bind_them_are_picked_again(monkeypatch):
    import stream.stack as stack_module

    holder = _occupied_port()
    real = stack_module.free_ports
    picks = []

    def first_pick_taken(count):
        ports = real(count)
        if not picks:
            ports[1] = holder.getsockname()[1]  # Redis's port is taken between the pick and its bind
        picks.append(ports)
        return ports

    monkeypatch.setattr(stack_module, "free_ports", first_pick_taken)
    try:
        stack = stack_module.EmbeddedStack().start()
        try:
            assert len(picks) == 2 and stack.redis_port == picks[1][1] != holder.getsockname()[1]
            import redis

            assert redis.Redis.from_url(stack.redis_url).ping()
        finally:
            stack.stop()
    finally:
        holder.close()
