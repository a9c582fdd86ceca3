"""The typed-record reader against a real broker topic filled with real encoded records."""
from __future__ import annotations

import time

import pytest
from confluent_kafka import Producer

from schemas.classified_record import encode_classified
from stream.stack import create_topics
from stream.subscribe import ClassifiedRecord, SubscribeError, subscribe
from stream.subscribe.filters import flag_predicate
from stream.subscribe.reader import ClassifiedReader, parse_start
from tests.stream.subscribe.helpers import classified_records

pytestmark = pytest.mark.integration


def _fill(bootstrap: str, topic: str, records: list[dict], *, partitions: int = 3, timestamp_ms: int | None = None,
          junk: bool = False) -> None:
    create_topics(bootstrap, [topic], partitions=partitions)
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    for r in records:
        kwargs = {"timestamp": timestamp_ms} if timestamp_ms else {}
        producer.produce(topic, encode_classified(r), key=r["object_id"].encode(), **kwargs)
    if junk:
        producer.produce(topic, b"not a classified record", key=b"junk")
    assert producer.flush(30) == 0


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return classified_records()


def test_reads_every_record_typed_and_stops_at_end(services, unique_name, records):
    topic = f"{unique_name}-classified"
    _fill(services.bootstrap_servers, topic, records, junk=True)
    with ClassifiedReader(services.bootstrap_servers, topic) as reader:
        got = list(reader)
    assert reader.stats.read == len(records) + 1 and reader.stats.undecodable == 1
    assert sorted(r.alert_id for r in got) == sorted(r["alert_id"] for r in records)
    by_id = {r["alert_id"]: r for r in records}
    for rec in got:
        assert isinstance(rec, ClassifiedRecord)
        src = by_id[rec.alert_id]
        assert rec.real_bogus == pytest.approx(src["real_bogus"])
        assert dict(rec.class_scores) == pytest.approx(src["class_scores"])
        assert [m.name for m in rec.models] == ["realbogus", "morphology"]
        assert rec.models[1].trained is False and rec.untrained is True
        assert rec.topic == topic and rec.offset >= 0 and rec.timestamp_ms is not None
        assert rec.top_class == max(src["class_scores"], key=src["class_scores"].get)
        assert rec.latency_ms == src["classified_ms"] - src["source_timestamp_ms"]


def test_where_flags_and_max(services, unique_name, records):
    topic = f"{unique_name}-classified"
    _fill(services.bootstrap_servers, topic, records)
    kept = list(subscribe(services.bootstrap_servers, topic, where="real_bogus > 0.8 and survey == 'ztf'"))
    assert sorted(r.alert_id for r in kept) == sorted(r["alert_id"] for r in records if r["real_bogus"] > 0.8 and r["survey"] == "ztf")
    assert len(kept) > 0
    with ClassifiedReader(services.bootstrap_servers, topic, predicate=flag_predicate(survey="rubin", class_label="morphology.star",
                                                                                      min_prob=0.5),
                          where="real_bogus >= 0") as reader:
        rubin_stars = list(reader)
    assert sorted(r.alert_id for r in rubin_stars) == sorted(
        r["alert_id"] for r in records if r["survey"] == "rubin" and r["class_scores"]["morphology.star"] >= 0.5)
    assert len(list(subscribe(services.bootstrap_servers, topic, max_records=7))) == 7


def test_start_latest_and_since(services, unique_name, records):
    topic = f"{unique_name}-classified"
    old_ms = int(time.time() * 1000) - 3_600_000
    new_ms = old_ms + 1_800_000
    _fill(services.bootstrap_servers, topic, records[:40], timestamp_ms=old_ms)
    _fill(services.bootstrap_servers, topic, records[40:], timestamp_ms=new_ms)
    assert list(subscribe(services.bootstrap_servers, topic, start="latest")) == []
    since = list(subscribe(services.bootstrap_servers, topic, start=new_ms - 1000))
    assert sorted(r.alert_id for r in since) == sorted(r["alert_id"] for r in records[40:])
    assert all(r.timestamp_ms == new_ms for r in since)
    future = list(subscribe(services.bootstrap_servers, topic, start=new_ms + 60_000))
    assert future == []


def test_missing_topic_is_an_error(services, unique_name):
    with pytest.raises(SubscribeError):
        list(subscribe(services.bootstrap_servers, f"{unique_name}-never-created"))


def test_parse_start():
    assert parse_start("earliest") == "earliest"
    assert parse_start("2026-01-01T00:00:00Z") == 1767225600000
    assert parse_start("2026-01-01T00:00:00") == 1767225600000
    assert parse_start("1767225600000") == 1767225600000
    with pytest.raises(SubscribeError):
        parse_start("yesterday")


def test_model_score_and_acai_top_class():
    from stream.subscribe.reader import ClassifiedRecord

    record = ClassifiedRecord.from_dict({
        "survey": "ztf", "alert_id": "1", "class_scores": {"acai.hosted": 0.9, "acai.bogus": 0.2},
        "models": [{"name": "braai", "version": "d6_m7", "scores": {"real": 0.97}},
                   {"name": "acai", "version": "d1_dnn_20201130", "scores": {"hosted": 0.9, "bogus": 0.2, "drb_from_braai_d6_m9": 0.0}}],
    })
    assert record.model_score("braai", "real") == 0.97
    assert record.model_score("acai", "drb_from_braai_d6_m9") == 0.0
    assert record.model_score("realbogus", "real") is None
    assert record.top_class == "acai.hosted" and record.top_prob == 0.9
