"""The batch stages (triage -> dedup -> score -> publish -> account -> commit) without a broker or
Redis: real bundled packets decoded by the real decoder, small fakes for the runner, the dedup
store, the producer and the consumer."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from confluent_kafka import KafkaError, TopicPartition

from schemas.alert import Exposure, InputKind
from schemas.classified_record import CLASSIFIED_SCHEMA_HEADER, LATEST_CLASSIFIED_VERSION, decode_classified
from schemas.decode.limits import DecodeSettings
from schemas.provenance import ModelProvenance
from stream import stages
from stream.envelope import DecodeOutcome, Envelope, decode_values
from stream.kafka_clients import PublishError
from tests.conftest import SAMPLES

TOPICS = stages.OutputTopics(alerts="classified", exposures="classified-exposures")


# ------------------------------------------------------------------------------------ the fakes
@dataclass
class FakeRunner:
    """Scores an item by its position in the chunk: P(real) = 0.1 * (index + 1)."""

    name: str
    labels: tuple[str, ...] = ("bogus", "real")
    max_batch: int = 2
    calls: list[int] = field(default_factory=list)

    @property
    def provenance(self) -> ModelProvenance:
        extra = {"real_bogus": True} if self.name == "realbogus" else {}
        return ModelProvenance(self.name, "1.0.0", "ab" * 32, trained=True, backend="fake", extra=extra)

    def select(self, items: Sequence[Any]) -> list[int]:
        return list(range(len(items)))

    def preprocess(self, items: Sequence[Any]) -> np.ndarray:
        self.calls.append(len(items))
        return np.arange(len(items), dtype=np.float32)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        real = 0.1 * (batch + 1)
        return np.stack([1 - real, real], axis=1)

    def close(self) -> None:
        pass


@dataclass
class FakeDedup:
    already: set[str] = field(default_factory=set)
    marked: dict[str, str] = field(default_factory=dict)

    def published(self, keys: Sequence[str]) -> set[str]:
        return {k for k in keys if k in self.already}

    def mark(self, destinations: Mapping[str, str]) -> None:
        self.marked.update(destinations)


class FakeMessage:
    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self._t, self._p, self._o = topic, partition, offset

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o


@dataclass
class FakeProducer:
    """Acknowledges on flush; ``fail_topics`` get a delivery error, ``lose`` reports are never served."""

    fail_topics: set[str] = field(default_factory=set)
    lose: int = 0
    buffer_errors: int = 0
    produced: list[tuple[str, bytes, bytes | None, list]] = field(default_factory=list)
    _callbacks: list = field(default_factory=list)

    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None, headers: Any = None,
                on_delivery: Any = None) -> None:
        if self.buffer_errors:
            self.buffer_errors -= 1
            raise BufferError("queue full")
        self.produced.append((topic, value or b"", key, list(headers or [])))
        self._callbacks.append((topic, on_delivery))

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        served = self._callbacks[:len(self._callbacks) - self.lose]
        for offset, (topic, cb) in enumerate(served):
            err = KafkaError(KafkaError._MSG_TIMED_OUT) if topic in self.fail_topics else None
            cb(err, FakeMessage(topic, 0, offset))
        left = len(self._callbacks) - len(served)
        self._callbacks.clear()
        return left


@dataclass
class FakeConsumer:
    commits: list[list[TopicPartition]] = field(default_factory=list)

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool) -> list[TopicPartition]:
        assert asynchronous is False
        self.commits.append(list(offsets))
        return list(offsets)


# ------------------------------------------------------------------------------------ helpers
def _packets(n: int) -> list[bytes]:
    return [p.read_bytes() for p in sorted((SAMPLES / "ztf" / "kowalski").glob("*.avro"))[:n]]


def _envelopes(values: Sequence[bytes | None], partitions: Sequence[int] | None = None, topic: str = "alerts") -> list[Envelope]:
    partitions = partitions or [0] * len(values)
    offsets: dict[int, int] = {}
    out = []
    for value, partition in zip(values, partitions):
        offset = offsets.get(partition, 10 * (partition + 1))
        offsets[partition] = offset + 1
        out.append(Envelope(topic, partition, offset, 1_700_000_000_000, b"k", value))
    return out


def _batch(values: Sequence[bytes | None], partitions: Sequence[int] | None = None) -> tuple[list[Envelope], list[DecodeOutcome]]:
    envelopes = _envelopes(values, partitions)
    outcomes, _ = decode_values([e.value for e in envelopes], DecodeSettings())
    return envelopes, outcomes


def _exposure(exposure_id: str) -> Exposure:
    return Exposure(exposure_id, "ACS/WFC", "F606W", 500.0, 60000.0, InputKind.RAW_EXPOSURE,
                    {"SCI,1": np.zeros((8, 8), np.float32)})


def _run_batch(values, dedup_store, producer, consumer, runners, partitions=None):
    """The stages in the service's order (what Service._process does around its metrics)."""
    envelopes, outcomes = _batch(values, partitions)
    triaged = stages.triage(envelopes, outcomes, set(runners))
    fresh, dups = stages.dedup(triaged.candidates, dedup_store)
    scored = stages.score(fresh, runners, TOPICS)
    messages = [stages.dead_letter_message(e, o, topic="dead", max_value_bytes=1 << 20, classifier_version="t")
                for e, o in triaged.dead]
    messages += [stages.classified_message(s, ingested_ms=1, classifier_version="t",
                                           processing_host="host-a") for s in scored]
    delivered = stages.publish(producer, messages)
    dedup_store.mark(stages.destinations(delivered))
    acct = stages.account(envelopes, triaged.dead, dups, scored)
    lost = stages.commit(consumer, envelopes)
    return envelopes, triaged, dups, scored, acct, lost


# ------------------------------------------------------------------------------------ triage
def test_triage_sends_bad_messages_and_unscored_kinds_to_dead_letters():
    good = _packets(2)
    envelopes, outcomes = _batch([good[0], b"\x07junk", None, good[1]])
    triaged = stages.triage(envelopes, outcomes, {InputKind.DIFFERENCE_ALERT})
    assert [e.offset for e, _ in triaged.candidates] == [10, 13]
    assert [(e.offset, o.reason) for e, o in triaged.dead][1] == (12, "empty")
    assert triaged.dead[0][0].offset == 11 and not triaged.dead[0][1].ok

    nothing_scores_alerts = stages.triage(envelopes, outcomes, {InputKind.RAW_EXPOSURE})
    assert not nothing_scores_alerts.candidates
    assert sorted(o.reason for _, o in nothing_scores_alerts.dead if o.reason == "unsupported_kind") == ["unsupported_kind"] * 2


def test_triage_refuses_a_decode_that_lost_messages():
    envelopes, outcomes = _batch(_packets(2))
    with pytest.raises(RuntimeError, match="1 outcomes for 2 messages"):
        stages.triage(envelopes, outcomes[:1], {InputKind.DIFFERENCE_ALERT})


# ------------------------------------------------------------------------------------ dedup
def test_dedup_catches_copies_inside_one_batch_and_already_published_keys():
    a, b, c = _packets(3)
    envelopes, outcomes = _batch([a, b, a, c, b])
    triaged = stages.triage(envelopes, outcomes, {InputKind.DIFFERENCE_ALERT})
    store = FakeDedup(already={triaged.candidates[3][1].key})   # c was published by an earlier batch
    fresh, dups = stages.dedup(triaged.candidates, store)
    assert [e.offset for e, _ in fresh] == [10, 11]
    assert [e.offset for e, _ in dups] == [12, 13, 14]


# ------------------------------------------------------------------------------------ score
def test_score_runs_each_kinds_runners_and_routes_each_kind_to_its_topic():
    envelopes = _envelopes([b"x"] * 5)
    _, outcomes = _batch(_packets(3))
    alerts = [o.items[0] for o in outcomes]
    exposures = [_exposure("j1"), _exposure("j2")]
    fresh = [(envelopes[0], alerts[0]), (envelopes[1], exposures[0]), (envelopes[2], alerts[1]),
             (envelopes[3], alerts[2]), (envelopes[4], exposures[1])]
    rb, hst = FakeRunner("realbogus"), FakeRunner("hrcelestialnet", labels=("galaxy", "nebula_star_cluster"))
    clock: dict[str, float] = {}
    scored = stages.score(fresh, {InputKind.DIFFERENCE_ALERT: [rb], InputKind.RAW_EXPOSURE: [hst]}, TOPICS,
                          lambda stage, s: clock.__setitem__(stage, clock.get(stage, 0.0) + s))
    assert rb.calls == [2, 1] and hst.calls == [2]           # chunks of the runner's max batch, per kind
    by_offset = {s.envelope.offset: s for s in scored}
    assert {o: s.topic for o, s in by_offset.items()} == {10: "classified", 12: "classified", 13: "classified",
                                                          11: "classified-exposures", 14: "classified-exposures"}
    assert [p.name for p, _ in by_offset[11].model_results] == ["hrcelestialnet"]
    # position in the chunk: 0, 1 then 0 again for the third alert (a new chunk)
    assert [by_offset[o].model_results[0][1]["real"] for o in (10, 12, 13)] == pytest.approx([0.1, 0.2, 0.1])
    assert set(clock) == {"preprocess", "infer"}


def test_score_gives_no_score_from_a_runner_to_items_it_does_not_select():
    class OnlyFirst(FakeRunner):
        def select(self, items: Sequence[Any]) -> list[int]:
            return [0]

    envelopes, outcomes = _batch(_packets(2))
    fresh = [(e, o.items[0]) for e, o in zip(envelopes, outcomes)]
    scored = stages.score(fresh, {InputKind.DIFFERENCE_ALERT: [FakeRunner("realbogus"), OnlyFirst("braai")]}, TOPICS)
    assert [[p.name for p, _ in s.model_results] for s in scored] == [["realbogus", "braai"], ["realbogus"]]


def test_a_frame_hook_reframes_the_encoded_value_for_its_topic():
    envelopes, outcomes = _batch(_packets(1))
    [scored] = stages.score([(envelopes[0], outcomes[0].items[0])], {InputKind.DIFFERENCE_ALERT: [FakeRunner("realbogus")]}, TOPICS)
    plain = stages.classified_message(scored, ingested_ms=1, classifier_version="t",
                                      processing_host=None)
    framed = stages.classified_message(scored, ingested_ms=1, classifier_version="t",
                                       processing_host=None, frame=lambda topic, value: topic.encode() + b"|" + value)
    assert framed.value == b"classified|" + plain.value


def test_score_raises_when_a_model_returns_the_wrong_shape():
    class Broken(FakeRunner):
        def infer(self, batch: np.ndarray) -> np.ndarray:
            return np.zeros((len(batch), 3), np.float32)

    envelopes, outcomes = _batch(_packets(1))
    with pytest.raises(RuntimeError, match="returned shape"):
        stages.score([(envelopes[0], outcomes[0].items[0])], {InputKind.DIFFERENCE_ALERT: [Broken("realbogus")]}, TOPICS)


# ------------------------------------------------------------------------------------ publish
def test_published_records_decode_with_the_header_version_and_host():
    envelopes, triaged, dups, scored, acct, lost = _run_batch(
        _packets(2), FakeDedup(), producer := FakeProducer(), FakeConsumer(), {InputKind.DIFFERENCE_ALERT: [FakeRunner("realbogus")]})
    assert len(producer.produced) == 2 and not lost
    for topic, value, _key, headers in producer.produced:
        record = decode_classified(value)
        h = dict(headers)
        assert topic == "classified" and h["sc-schema"] == CLASSIFIED_SCHEMA_HEADER.encode()
        assert record["schema_version"] == "{}.{}".format(*LATEST_CLASSIFIED_VERSION)
        assert CLASSIFIED_SCHEMA_HEADER == f"classified/{record['schema_version']}"
        assert record["processing_host"] == "host-a"
        assert record["real_bogus"] == pytest.approx(0.1) or record["real_bogus"] == pytest.approx(0.2)
        assert h["sc-source"] == f"alerts/0/{record['source_offset']}".encode()


def test_dead_letters_carry_reason_source_and_bytes_or_say_they_were_omitted():
    env = _envelopes([b"\x07junk-bytes"])[0]
    outcome = DecodeOutcome(reason="unknown_format", detail="no magic", record_index=3)
    small = stages.dead_letter_message(env, outcome, topic="dead", max_value_bytes=100, classifier_version="9")
    h = dict(small.headers)
    assert small.value == b"\x07junk-bytes" and small.topic == "dead" and small.key == b"k"
    assert h["sc-reason"] == b"unknown_format" and h["sc-source-offset"] == b"10" and h["sc-record-index"] == b"3"
    omitted = stages.dead_letter_message(env, outcome, topic="dead", max_value_bytes=4, classifier_version="9")
    assert omitted.value == b"" and b"11 bytes > 4" in dict(omitted.headers)["sc-value-omitted"]


def test_a_failed_delivery_raises_before_anything_is_marked_or_committed():
    store, consumer = FakeDedup(), FakeConsumer()
    runners = {InputKind.DIFFERENCE_ALERT: [FakeRunner("realbogus")]}
    with pytest.raises(PublishError, match="1 failed"):
        _run_batch(_packets(2) + [b"\x07junk"], store, FakeProducer(fail_topics={"dead"}), consumer, runners)
    with pytest.raises(PublishError, match="1 record"):
        _run_batch(_packets(2), store, FakeProducer(lose=1), consumer, runners)
    assert store.marked == {} and consumer.commits == []


def test_a_full_local_queue_is_retried_not_dropped():
    producer = FakeProducer(buffer_errors=3)
    _run_batch(_packets(2), FakeDedup(), producer, FakeConsumer(), {InputKind.DIFFERENCE_ALERT: [FakeRunner("realbogus")]})
    assert len(producer.produced) == 2


def test_marks_name_each_records_destination_and_skip_dead_letters():
    store = FakeDedup()
    _, triaged, _, scored, _, _ = _run_batch(_packets(2) + [None], store, FakeProducer(), FakeConsumer(),
                                             {InputKind.DIFFERENCE_ALERT: [FakeRunner("realbogus")]})
    assert set(store.marked) == {s.item.key for s in scored} and len(triaged.dead) == 1
    assert all(v.startswith("classified/0/") for v in store.marked.values())


# ------------------------------------------------------------------------------------ account + commit
def test_account_balances_every_partition_and_commit_is_last_offset_plus_one():
    a, b, c = _packets(3)
    values = [a, b, None, a, c, b"\x07junk", c]
    partitions = [0, 0, 0, 1, 1, 2, 2]
    store = FakeDedup(already=set())
    consumer = FakeConsumer()
    envelopes, triaged, dups, scored, acct, lost = _run_batch(
        values, store, FakeProducer(), consumer, {InputKind.DIFFERENCE_ALERT: [FakeRunner("realbogus")]}, partitions)
    assert acct.balanced and not lost
    assert acct.partitions[("alerts", 0)] == {"consumed": 3, "published": 2, "duplicates": 0, "dead_lettered": 1}
    assert acct.partitions[("alerts", 1)] == {"consumed": 2, "published": 1, "duplicates": 1, "dead_lettered": 0}
    assert acct.partitions[("alerts", 2)] == {"consumed": 2, "published": 0, "duplicates": 1, "dead_lettered": 1}
    assert acct.total("consumed") == acct.total("published") + acct.total("duplicates") + acct.total("dead_lettered") == 7
    assert acct.messages_by_topic == {"alerts": 7} and acct.dead_letter_reasons["empty"] == 1
    assert acct.published_by_topic == {"classified": len(scored)} == {"classified": 3}
    assert acct.scores_by_model == {("realbogus", "ztf"): 3}
    committed = {(tp.topic, tp.partition): tp.offset for tp in consumer.commits[0]}
    assert committed == {("alerts", 0): 13, ("alerts", 1): 22, ("alerts", 2): 32}


def test_commit_offsets_take_the_highest_offset_whatever_the_order():
    envelopes = [Envelope("t", 0, 7, 0, None, b""), Envelope("t", 0, 5, 0, None, b""), Envelope("u", 3, 0, 0, None, b"")]
    assert {(tp.topic, tp.partition, tp.offset) for tp in stages.commit_offsets(envelopes)} == {("t", 0, 8), ("u", 3, 1)}
    assert stages.commit_offsets([]) == []


# ------------------------------------------------------------------------------------ the service's batch step
def test_the_service_runs_the_stages_and_counts_every_input_once():
    """Service._process with fakes: records and dead letters out, marks, metrics and commit."""
    from stream.config import load_settings
    from stream.metrics import Metrics
    from stream.service import Service

    settings = load_settings(env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "REDIS_URL": "redis://127.0.0.1:1/0"})
    store, producer, consumer = FakeDedup(), FakeProducer(), FakeConsumer()
    service = Service(settings=settings, consumer=consumer, producer=producer, dedup=store,  # type: ignore[arg-type]
                      runners={InputKind.DIFFERENCE_ALERT: [FakeRunner("realbogus")]}, metrics=Metrics(),
                      processing_host="member-1")
    a, b = _packets(2)
    envelopes = _envelopes([a, b, a, b"\x07junk"], [0, 1, 1, 0])
    service._process(service._submit(envelopes))

    totals = service.metrics.totals()
    assert (totals.consumed, totals.published, totals.duplicates, totals.dead_lettered) == (4, 2, 1, 1)
    assert totals.balanced and service.metrics.redis_up
    assert service.metrics.registry.get_sample_value("sc_model_scores_total", {"model": "realbogus", "survey": "ztf"}) == 2
    topics = [t for t, *_ in producer.produced]
    assert sorted(topics) == sorted([settings.kafka.dead_letter_topic] + [settings.kafka.output_topic] * 2)
    records = [decode_classified(v) for t, v, _, _ in producer.produced if t == settings.kafka.output_topic]
    assert {r["processing_host"] for r in records} == {"member-1"}
    assert set(store.marked) == {f"ztf:{r['alert_id']}" for r in records}
    assert {(tp.partition, tp.offset) for tp in consumer.commits[0]} == {(0, 12), (1, 22)}


def test_the_service_commits_nothing_when_a_delivery_fails():
    from stream.config import load_settings
    from stream.metrics import Metrics
    from stream.service import Service

    settings = load_settings(env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "REDIS_URL": "redis://127.0.0.1:1/0"})
    store, consumer = FakeDedup(), FakeConsumer()
    service = Service(settings=settings, consumer=consumer, producer=FakeProducer(fail_topics={settings.kafka.output_topic}),  # type: ignore[arg-type]
                      dedup=store, runners={InputKind.DIFFERENCE_ALERT: [FakeRunner("realbogus")]}, metrics=Metrics())  # type: ignore[arg-type]
    with pytest.raises(PublishError):
        service._process(service._submit(_envelopes(_packets(2))))
    assert consumer.commits == [] and store.marked == {} and service.metrics.totals().consumed == 0


def test_a_bug_while_building_a_record_is_ours_a_value_that_does_not_fit_is_the_inputs():
    for bug in (TypeError("x"), KeyError("x"), IndexError("x"), AttributeError("x"), MemoryError()):
        assert stages.is_our_fault(bug)
    for bad_input in (ValueError("does not fit classified v1.3"), OverflowError("inf")):
        assert not stages.is_our_fault(bad_input)
