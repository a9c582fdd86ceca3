"""The production assignor, cooperative-sticky, with two members of one group on a real Kafka
cluster (``KAFKA_BOOTSTRAP_SERVERS`` and ``REDIS_URL`` named in the environment; see
tests/conftest.py). The embedded stack runs an eager assignor (stream/stack.py
``EMBEDDED_ASSIGNMENT_STRATEGY``: Tansu is not the reference for KIP-429), so without a cluster the
test is skipped, with the reason; ``TEST_ASSIGNMENT_STRATEGY=cooperative-sticky`` runs it on the
embedded Tansu all the same (stream/README.md, "The production assignor", says what that showed).

What it checks, through the service's own rebalance callbacks: the members join and split the
partitions; the first member gives up only the partitions the second takes (an eager assignor
revokes them all); when the first leaves, the second is only *added* its partitions and never
gives back its own; and every alert, produced before, between and after those moves, is
published exactly once.
"""
from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from stream.config import load_settings
from stream.stack import EMBEDDED_ASSIGNMENT_STRATEGY, create_topics

pytestmark = pytest.mark.integration

STRATEGY = "cooperative-sticky"
PARTITIONS = 6
ALERTS = 480
SKIP_REASON = (f"{STRATEGY} needs a real Kafka cluster: set KAFKA_BOOTSTRAP_SERVERS and REDIS_URL "
               f"(tests/conftest.py, services) to run it; the embedded stack runs {EMBEDDED_ASSIGNMENT_STRATEGY!r} "
               f"(stream/stack.py EMBEDDED_ASSIGNMENT_STRATEGY; TEST_ASSIGNMENT_STRATEGY={STRATEGY} tries Tansu anyway)")

Partition = tuple[str, int]


class Membership:
    """A member's rebalance callbacks as they happen: (kind, partitions). Wraps the service's own
    callbacks (it subscribes with them in ``run``), which still run after."""

    def __init__(self, service: Any) -> None:
        self.events: list[tuple[str, frozenset[Partition]]] = []
        self._lock = threading.Lock()
        for kind in ("assign", "revoke", "lost"):
            setattr(service, f"_on_{kind}", self._recording(kind, getattr(service, f"_on_{kind}")))

    def _recording(self, kind: str, original: Callable[[Any, list[Any]], None]) -> Callable[[Any, list[Any]], None]:
        def callback(consumer: Any, partitions: list[Any]) -> None:
            with self._lock:
                self.events.append((kind, frozenset((p.topic, p.partition) for p in partitions)))
            original(consumer, partitions)
        return callback

    def snapshot(self) -> list[tuple[str, frozenset[Partition]]]:
        with self._lock:
            return list(self.events)

    def owned(self, events: list[tuple[str, frozenset[Partition]]] | None = None) -> frozenset[Partition]:
        """What the member holds after ``events``: cooperative callbacks carry increments, eager
        ones revoke everything and assign the whole set; replaying them covers both."""
        held: set[Partition] = set()
        for kind, partitions in self.snapshot() if events is None else events:
            if kind == "assign":
                held |= partitions
            else:
                held -= partitions
        return frozenset(held)


def _wait(condition: Callable[[], bool], what: str, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def _produce(bootstrap: str, topic: str, messages: list[Any]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    for m in messages:
        producer.produce(topic, m.value, key=m.key, headers=m.headers)
        producer.poll(0)
    assert producer.flush(30) == 0


def test_two_members_rebalance_incrementally_and_publish_every_alert_once(request, unique_name, tmp_path: Path):
    cluster = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") and os.environ.get("REDIS_URL")
    if not (cluster or os.environ.get("TEST_ASSIGNMENT_STRATEGY") == STRATEGY):
        pytest.skip(SKIP_REASON)
    services = request.getfixturevalue("services")

    from benchmarks.night_data import build_night
    from schemas.classified_record import decode_classified
    from schemas.decode import decode_message
    from stream.kafka_clients import read_topic
    from stream.service import build_service, load_runners

    name = unique_name
    topic, output = f"{name}-alerts", f"{name}-classified"
    create_topics(services.bootstrap_servers, [topic, output, f"{name}-dlq"], partitions=PARTITIONS)
    everything = frozenset((topic, p) for p in range(PARTITIONS))
    night = build_night(ALERTS)  # the bundled ZTF and Rubin packets, copies with fresh ids, keyed by object
    expected = Counter(item.key for m in night.alerts for item in decode_message(m.value))
    assert sum(expected.values()) == ALERTS == len(expected)

    settings = load_settings(env={
        "KAFKA_BOOTSTRAP_SERVERS": services.bootstrap_servers,
        "REDIS_URL": services.redis_url,
        "SC__KAFKA__ALERT_TOPICS": topic,
        "SC__KAFKA__OUTPUT_TOPIC": output,
        "SC__KAFKA__DEAD_LETTER_TOPIC": f"{name}-dlq",
        "SC__KAFKA__GROUP_ID": f"{name}-group",
        "SC__KAFKA__ASSIGNMENT_STRATEGY": STRATEGY,
        "SC__KAFKA__SESSION_TIMEOUT_MS": "10000",
        "SC__REDIS__KEY_PREFIX": f"{name}:",
        "SC__ENGINE__BACKEND": "onnxruntime",
        "SC__ENGINE__ALLOW_UNTRAINED": "true",
        "SC__ENGINE__CACHE_DIR": str(tmp_path / "engines"),
        "SC__OBSERVABILITY__METRICS_PORT": "0",
        "SC__OBSERVABILITY__HEALTH_PORT": "0",
        "SC__BATCH__MAX_SIZE": "16",
        "SC__BATCH__DECODE_WORKERS": "1",
    })
    assert settings.kafka.assignment_strategy == STRATEGY
    runners = load_runners(settings)
    members: list[tuple[Any, threading.Thread]] = []

    def start() -> tuple[Any, Membership]:
        service = build_service(settings, runners=runners, metrics_port=0)
        membership = Membership(service)
        thread = threading.Thread(target=service.run, daemon=True)
        thread.start()
        members.append((service, thread))
        return service, membership

    try:
        a, ma = start()
        _produce(services.bootstrap_servers, topic, night.alerts[: ALERTS // 3])
        _wait(lambda: ma.owned() == everything, "the first member to own every partition")

        # A second member joins: the partitions split, and only the moved ones leave the first.
        before_join = len(ma.snapshot())
        b, mb = start()
        _wait(lambda: bool(mb.owned()) and ma.owned() | mb.owned() == everything and not ma.owned() & mb.owned(),
              "the partitions to split between the two members")
        time.sleep(2)  # let a cooperative round settle: nothing more may move
        assert ma.owned() | mb.owned() == everything and not ma.owned() & mb.owned()
        a_revoked = frozenset().union(*(p for kind, p in ma.snapshot()[before_join:] if kind == "revoke"))
        assert a_revoked == mb.owned(), f"the first member gave up {sorted(a_revoked)}, the second took {sorted(mb.owned())}"
        assert ma.owned() and len(a_revoked) < PARTITIONS, "an eager rebalance: every partition was revoked"
        assert not [e for e in ma.snapshot() + mb.snapshot() if e[0] == "lost"]
        kept_by_a = ma.owned()

        _produce(services.bootstrap_servers, topic, night.alerts[ALERTS // 3: 2 * ALERTS // 3])
        _wait(lambda: a.metrics.totals().consumed > 0 and b.metrics.totals().consumed > 0, "both members to consume")

        # The first member leaves: the second is only added what the first held.
        before_leave = len(mb.snapshot())
        _produce(services.bootstrap_servers, topic, night.alerts[2 * ALERTS // 3:])
        a.request_stop()
        members[0][1].join(60)
        assert not members[0][1].is_alive()
        _wait(lambda: mb.owned() == everything, "the second member to own every partition")
        after_leave = mb.snapshot()[before_leave:]
        assert [kind for kind, _ in after_leave] == ["assign"] * len(after_leave), after_leave
        assert frozenset().union(*(p for _, p in after_leave)) == kept_by_a

        records = [decode_classified(r.value) for r in read_topic(services.bootstrap_servers, output, expect=ALERTS, timeout_s=180)]
    finally:
        for service, _ in members:
            service.request_stop()
        for _, thread in members:
            thread.join(60)
        for rs in runners.values():
            for r in rs:
                r.close()

    got = Counter(f"{r['survey']}:{r['alert_id']}" for r in records)
    assert set(got) == set(expected), f"lost: {sorted(set(expected) - set(got))[:5]}"
    assert max(got.values()) == 1, f"published twice: {[k for k, n in got.items() if n > 1][:5]}"
    totals = [a.metrics.totals(), b.metrics.totals()]
    assert all(t.balanced for t in totals)
    assert sum(t.published for t in totals) == ALERTS
    assert sum(t.consumed for t in totals) >= ALERTS
