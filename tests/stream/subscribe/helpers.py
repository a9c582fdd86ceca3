"""Real classified records for tests: real bundled packets decoded, scored with stated test scores.

The scores are inputs the tests choose (so filters have something to select on), not model
outputs; the records go through the real builder and encoder (schemas.classified_record).
"""
from __future__ import annotations

from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from engines.contract import ModelProvenance
from schemas.classified_record import build_classified_record
from schemas.decode import decode_message
from stream.replay.sources import SourceMessage, iter_source

SAMPLES = Path(__file__).resolve().parents[3] / "schemas" / "samples"

REALBOGUS = ModelProvenance(name="realbogus", version="test-1", weights_sha256="a" * 64, trained=True, backend="onnxruntime",
                            extra={"real_bogus": True})
MORPHOLOGY = ModelProvenance(name="morphology", version="test-2", weights_sha256="b" * 64, trained=False, backend="pytorch")
LABELS = ("galaxy", "star", "artefact")


def bundled_messages() -> list[SourceMessage]:
    return [m for m in iter_source(SAMPLES) if isinstance(m, SourceMessage)]


def test_scores(index: int, count: int) -> list[tuple[ModelProvenance, dict[str, float]]]:
    """Deterministic, evenly spread scores: rb = index/(count-1); top class cycles through LABELS."""
    rb = index / max(1, count - 1)
    top = LABELS[index % len(LABELS)]
    classes = {label: (0.8 if label == top else 0.1) for label in LABELS}
    return [(REALBOGUS, {"real": rb, "bogus": 1.0 - rb}), (MORPHOLOGY, classes)]


def classified_records(source_topic: str = "alerts", offsets: list[tuple[int, int]] | None = None) -> list[dict]:
    """One classified record per bundled real packet (84), built with schemas.classified_record."""
    messages = bundled_messages()
    records = []
    for i, message in enumerate(messages):
        alert = decode_message(message.value)[0]
        partition, offset = offsets[i] if offsets else (0, i)
        records.append(build_classified_record(
            alert, test_scores(i, len(messages)), source_topic=source_topic, source_partition=partition,
            source_offset=offset, source_timestamp_ms=1_700_000_000_000 + i, ingested_ms=1_700_000_000_100 + i,
            classified_ms=1_700_000_000_200 + 2 * i, classifier_version="0.1.0"))
    return records


def consume_all(bootstrap: str, topic: str, timeout_s: float = 30.0) -> list:
    """Every message of ``topic`` (all partitions, from the start, until each partition's EOF)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{topic}", "enable.partition.eof": True,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        meta = consumer.list_topics(topic, timeout=10)
        partitions = sorted(meta.topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, -2) for p in partitions])
        at_eof: set[int] = set()
        messages = []
        import time
        deadline = time.monotonic() + timeout_s
        while at_eof != set(partitions) and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                at_eof.add(msg.partition())
                continue
            at_eof.discard(msg.partition())
            messages.append(msg)
        assert at_eof == set(partitions), f"did not reach the end of {topic}"
        return messages
    finally:
        consumer.close()
