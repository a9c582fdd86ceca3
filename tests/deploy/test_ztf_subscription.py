"""The ZTF config's regex subscription, against the real broker: it takes every night's public
topic, including one created after the consumer started, and leaves other programs' topics alone."""
from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer

from stream.config import load_settings
from stream.stack import create_topics

from .deployfiles import DEPLOY, REPO

pytestmark = pytest.mark.integration

ZTF_PACKET = sorted((REPO / "schemas" / "samples" / "ztf" / "fink").glob("*.avro"))[0]


def _produce(bootstrap: str, topic: str, value: bytes) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, value=value, key=topic.encode())
    assert producer.flush(10) == 0


def test_regex_subscription_follows_new_nights_only_for_programid1(services, unique_name):
    # Nights far in the future, random per run, so a shared real cluster never has them already.
    day = random.randrange(10**6 - 1)
    night1, night2 = f"ztf_29{day:06d}_programid1", f"ztf_29{day + 1:06d}_programid1"
    partnership = f"ztf_29{day:06d}_programid2"
    settings = load_settings(DEPLOY / "config" / "ztf.toml", env={
        "KAFKA_BOOTSTRAP_SERVERS": services.bootstrap_servers,
        "SC__KAFKA__GROUP_ID": unique_name,
        "SC__KAFKA__ASSIGNMENT_STRATEGY": services.assignment_strategy,
        "SC__KAFKA__SESSION_TIMEOUT_MS": "6000",
    })
    k = settings.kafka
    create_topics(k.bootstrap_servers, [night1, partnership], partitions=1)
    packet = Path(ZTF_PACKET).read_bytes()
    _produce(k.bootstrap_servers, night1, packet)
    _produce(k.bootstrap_servers, partnership, packet)

    conf = {**k.common_config(), "group.id": k.group_id, "auto.offset.reset": k.auto_offset_reset,
            "partition.assignment.strategy": k.assignment_strategy, "session.timeout.ms": k.session_timeout_ms,
            "enable.auto.commit": False, "topic.metadata.refresh.interval.ms": 1000}
    consumer = Consumer(conf)
    try:
        consumer.subscribe(list(k.alert_topics))
        seen: dict[str, bytes] = {}
        deadline = time.monotonic() + 90
        created_second_night = False
        while time.monotonic() < deadline and set(seen) != {night1, night2}:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                seen[msg.topic()] = msg.value()
            if night1 in seen and not created_second_night:
                # The next night's topic appears while the service runs.
                create_topics(k.bootstrap_servers, [night2], partitions=1)
                _produce(k.bootstrap_servers, night2, packet)
                created_second_night = True
        assert set(seen) == {night1, night2}, f"got {sorted(seen)}"
        assert seen[night1] == packet
        assert partnership not in seen
    finally:
        consumer.close()
