"""The batch step as named stages: triage -> dedup -> score -> publish -> account -> commit.

Each stage is a plain function over one decoded batch, so a unit test can call it with small
fakes; :class:`stream.service.Service` runs them in order and wires the real collaborators
(consumer, producer, Redis, engine runners). The collaborators are typed as Protocols:

* :class:`engines.scoring.Runner` scores items (the engine registry's runners);
* :class:`Dedup` answers "already published?" and marks what was published (Redis);
* :class:`Publisher` produces records and reports deliveries (a Kafka ``Producer``);
* :class:`Committer` commits offsets (a Kafka ``Consumer``).

The order carries the delivery guarantee: outputs are produced and every delivery report is in
before the inputs are marked published, and offsets are committed last, ``offset + 1`` per
partition. Every consumed input ends in exactly one of published / duplicate / dead-lettered.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol

from confluent_kafka import TopicPartition

from engines.scoring import ModelResults, Runner, StageClock, UnscorableInput, score_items
from schemas.alert import InputKind, Item
from schemas.classified_record import CLASSIFIED_SCHEMA_HEADER, build_classified_record, encode_classified
from stream.envelope import DecodeOutcome, Envelope, dedup_candidates
from stream.kafka_clients import Committer, DeliveryTracker, Publisher, commit_or_raise, flush_or_raise, produce_retrying
from stream.schema_registry import redact_urls_in

__all__ = [
    "Dedup", "Publisher", "Committer", "Triage", "Scored", "Outgoing", "BatchAccount", "OutputTopics",
    "triage", "dedup", "score", "classified_message", "dead_letter_message", "publish", "destinations",
    "account", "commit_offsets", "commit", "UNSCORABLE", "is_our_fault", "classified_messages",
]

#: Dead-letter reason of an input that decoded but could not be scored, built into a record,
#: encoded or produced (a band its model needs is missing, a record over ``message.max.bytes``).
UNSCORABLE = "unscorable"


def is_our_fault(exc: BaseException) -> bool:
    """Whether a failure while building or encoding one item's record is ours (memory, or a bug:
    TypeError, KeyError, IndexError raise on every input alike), so it must stop the batch, rather
    than the item's (a value that does not fit: ValueError, as the codec raises, or an overflow)."""
    return not isinstance(exc, (ValueError, ArithmeticError)) or isinstance(exc, MemoryError)


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:1000]


class Dedup(Protocol):
    """Which keys were published already, and marking keys as published (Redis in the service)."""

    def published(self, keys: Sequence[str]) -> set[str]: ...

    def mark(self, destinations: Mapping[str, str]) -> None: ...


# ---------------------------------------------------------------------------------------- triage
@dataclass(frozen=True)
class Triage:
    """A batch split into items to score and messages for the dead-letter topic."""

    candidates: list[tuple[Envelope, Item]] = field(default_factory=list)
    dead: list[tuple[Envelope, DecodeOutcome]] = field(default_factory=list)


def triage(envelopes: Sequence[Envelope], outcomes: Sequence[DecodeOutcome], scorable: Collection[InputKind]) -> Triage:
    """Undecodable messages and items of a kind no model scores go to the dead letters; the rest
    are candidates, one per decoded item (a container message may hold several)."""
    if len(envelopes) != len(outcomes):
        raise RuntimeError(f"decode returned {len(outcomes)} outcomes for {len(envelopes)} messages")
    out = Triage()
    for env, outcome in zip(envelopes, outcomes):
        if not outcome.ok:
            out.dead.append((env, outcome))
            continue
        for item in outcome.items:
            if item.kind in scorable:
                out.candidates.append((env, item))
            else:
                out.dead.append((env, DecodeOutcome(reason="unsupported_kind", detail=f"no model for {item.kind.value} on {env.topic}")))
    return out


# ----------------------------------------------------------------------------------------- dedup
def dedup(candidates: Sequence[tuple[Envelope, Item]], store: Dedup) -> tuple[list[tuple[Envelope, Item]], list[tuple[Envelope, Item]]]:
    """(to score, duplicates): published before (per ``store``), or a second copy in this batch."""
    published = store.published([item.key for _, item in candidates])
    return dedup_candidates(candidates, published)


# ----------------------------------------------------------------------------------------- score
@dataclass(frozen=True)
class OutputTopics:
    """Where classified records go: difference alerts to one topic, exposures to another."""

    alerts: str
    exposures: str

    def for_kind(self, kind: InputKind) -> str:
        return self.alerts if kind == InputKind.DIFFERENCE_ALERT else self.exposures


@dataclass(frozen=True)
class Scored:
    """One scored input, ready to encode: its message, item, output topic and model results."""

    envelope: Envelope
    item: Item
    topic: str
    model_results: ModelResults
    classified_ms: int


def score(fresh: Sequence[tuple[Envelope, Item]], runners: Mapping[InputKind, Sequence[Runner]], topics: OutputTopics,
          clock: StageClock | None = None, refused: list[tuple[Envelope, DecodeOutcome]] | None = None,
          pool: Executor | None = None) -> list[Scored]:
    """Score the fresh items kind by kind with that kind's runners (:func:`engines.scoring.score_items`).

    With a ``refused`` list, an input that cannot be scored does not stop the batch: when a
    kind's preprocessing refuses a chunk (:class:`engines.scoring.UnscorableInput`), its items
    are scored one by one, and each one refused alone is appended to ``refused`` as
    :data:`UNSCORABLE` with the reason; the rest are scored. Inference failures are ours: they
    raise whatever ``refused`` is. ``pool``: threads that score a batch's chunks at once
    (:func:`engines.scoring.score_items`); the one-by-one search runs without it.
    """
    by_kind: dict[InputKind, list[tuple[Envelope, Item]]] = {}
    for env, item in fresh:
        by_kind.setdefault(item.kind, []).append((env, item))
    out: list[Scored] = []
    for kind, pairs in by_kind.items():
        topic = topics.for_kind(kind)
        try:
            results = score_items([item for _, item in pairs], runners[kind], clock, pool)
        except UnscorableInput:
            if refused is None:
                raise
            for env, item in pairs:  # find the culprits: score each alone (an engine failure still raises)
                try:
                    (model_results,) = score_items([item], runners[kind], clock)
                except UnscorableInput as one:
                    refused.append((env, DecodeOutcome(reason=UNSCORABLE, detail=f"{item.key}: preprocessing refused it: {one}")))
                    continue
                out.append(Scored(env, item, topic, model_results, int(time.time() * 1000)))
            continue
        classified_ms = int(time.time() * 1000)
        out += [Scored(env, item, topic, model_results, classified_ms) for (env, item), model_results in zip(pairs, results)]
    return out


# --------------------------------------------------------------------------------------- publish
@dataclass(frozen=True)
class Outgoing:
    """One record to produce; ``token`` names it in the delivery reports."""

    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    token: Any


def classified_message(scored: Scored, *, ingested_ms: int, classifier_version: str,
                       processing_host: str | None, frame: Callable[[str, bytes], bytes] | None = None) -> Outgoing:
    """The classified record of one scored input, encoded, with its headers; the token is the item's key.

    ``frame(topic, value)`` may re-frame the encoded value for its topic (a registry's schema id
    in place of the shipped one); by default the codec's framing stands.
    """
    env, item, results = scored.envelope, scored.item, scored.model_results
    record = build_classified_record(
        item, results, source_topic=env.topic, source_partition=env.partition, source_offset=env.offset,
        source_timestamp_ms=env.timestamp_ms, ingested_ms=ingested_ms, classified_ms=scored.classified_ms,
        classifier_version=classifier_version, processing_host=processing_host,
    )
    headers = [
        ("sc-models", ",".join(f"{p.name}:{p.version}" for p, _ in results).encode()),
        ("sc-untrained", b"true" if any(not p.trained for p, _ in results) else b"false"),
        ("sc-source", f"{env.topic}/{env.partition}/{env.offset}".encode()),
        ("sc-schema", CLASSIFIED_SCHEMA_HEADER.encode()),
    ]
    value = encode_classified(record)
    if frame is not None:
        value = frame(scored.topic, value)
    return Outgoing(scored.topic, str(item.object_id or item.alert_id).encode(), value, headers, item.key)


def _size(message: Outgoing) -> int:
    return len(message.value) + len(message.key or b"") + sum(len(k) + len(v) for k, v in message.headers)


def classified_messages(scored: Sequence[Scored], *, max_record_bytes: int, **options: Any,
                        ) -> tuple[list[Outgoing], list[Scored], list[tuple[Envelope, DecodeOutcome]]]:
    """(messages, the scored inputs they carry, refused): :func:`classified_message` for each
    scored input; one whose record cannot be built or encoded, or whose key, value and headers
    exceed ``max_record_bytes`` (the producer's ``message.max.bytes`` less room for framing), is
    refused as :data:`UNSCORABLE` rather than raised, so the rest of the batch is published."""
    messages: list[Outgoing] = []
    kept: list[Scored] = []
    refused: list[tuple[Envelope, DecodeOutcome]] = []
    for s in scored:
        try:
            message = classified_message(s, **options)
        except Exception as exc:
            if is_our_fault(exc):
                raise
            refused.append((s.envelope, DecodeOutcome(reason=UNSCORABLE, detail=f"{s.item.key}: record not built: {_why(exc)}")))
            continue
        size = _size(message)
        if size > max_record_bytes:
            refused.append((s.envelope, DecodeOutcome(reason=UNSCORABLE, detail=f"{s.item.key}: classified record of {size} "
                                                                                  f"bytes > {max_record_bytes} (message.max.bytes)")))
            continue
        messages.append(message)
        kept.append(s)
    return messages, kept, refused


#: Longest message key a dead letter keeps (a longer one is replaced by its size in a header).
DEAD_LETTER_MAX_KEY_BYTES = 4096


def dead_letter_message(env: Envelope, outcome: DecodeOutcome, *, topic: str, max_value_bytes: int,
                        classifier_version: str) -> Outgoing:
    """The dead letter of one message: its original bytes (or none, if over ``max_value_bytes``),
    the reason code and detail, and where it came from, in headers."""
    headers = [
        ("sc-reason", (outcome.reason or "").encode()),
        ("sc-detail", redact_urls_in(outcome.detail)[:1000].encode()),
        ("sc-source-topic", env.topic.encode()),
        ("sc-source-partition", str(env.partition).encode()),
        ("sc-source-offset", str(env.offset).encode()),
        ("sc-source-timestamp-ms", str(env.timestamp_ms).encode()),
        ("sc-classifier-version", classifier_version.encode()),
    ]
    if outcome.record_index is not None:
        headers.append(("sc-record-index", str(outcome.record_index).encode()))
    key = env.key
    if key is not None and len(key) > DEAD_LETTER_MAX_KEY_BYTES:
        headers.append(("sc-key-omitted", f"{len(key)} bytes > {DEAD_LETTER_MAX_KEY_BYTES}".encode()))
        key = None
    value = env.value or b""
    if len(value) > max_value_bytes:
        headers.append(("sc-value-omitted", f"{len(value)} bytes > {max_value_bytes}: read it at the "
                                             f"source topic/partition/offset".encode()))
        value = b""
    return Outgoing(topic, key, value, headers, ("dlq", env.topic, env.partition, env.offset))


def publish(producer: Publisher, messages: Sequence[Outgoing], timeout_s: float = 180.0) -> dict[Any, Any]:
    """Produce every message and wait for every delivery report.

    Returns the delivered messages by token; raises :class:`stream.kafka_clients.PublishError`
    if any record is unacknowledged (then nothing of the batch may be marked or committed).
    """
    tracker = DeliveryTracker()
    for i, m in enumerate(messages):
        # dead-letter tokens name their source message, which may give several (a container's
        # unscorable items): numbered, so each report counts (item keys are unique per batch)
        callback = tracker.callback_for(m.token if isinstance(m.token, str) else (m.token, i))
        produce_retrying(producer, m.topic, m.value, key=m.key, headers=m.headers, on_delivery=callback)
    flush_or_raise(producer, tracker, len(messages), timeout_s=timeout_s)
    return tracker.delivered


def destinations(delivered: Mapping[Any, Any]) -> dict[str, str]:
    """Item key -> ``topic/partition/offset`` of its classified record (dead letters left out)."""
    return {key: f"{m.topic()}/{m.partition()}/{m.offset()}" for key, m in delivered.items() if isinstance(key, str)}


# --------------------------------------------------------------------------------------- account
@dataclass
class BatchAccount:
    """What became of a batch's inputs, per source partition and in total."""

    messages_by_topic: dict[str, int] = field(default_factory=dict)
    partitions: dict[tuple[str, int], dict[str, int]] = field(default_factory=dict)
    published_by_topic: dict[str, int] = field(default_factory=dict)
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)
    duplicates_by_topic: dict[str, int] = field(default_factory=dict)
    #: (model, survey) -> published inputs that model scored (one it does not apply to gets no score)
    scores_by_model: dict[tuple[str, str], int] = field(default_factory=dict)

    def add(self, env: Envelope, what: str) -> None:
        counts = self.partitions.setdefault((env.topic, env.partition),
                                            {"consumed": 0, "published": 0, "duplicates": 0, "dead_lettered": 0})
        counts["consumed"] += 1
        counts[what] += 1

    def total(self, what: str) -> int:
        return sum(c[what] for c in self.partitions.values())

    @property
    def balanced(self) -> bool:
        """consumed = published + duplicates + dead_lettered on every partition."""
        return all(c["consumed"] == c["published"] + c["duplicates"] + c["dead_lettered"] for c in self.partitions.values())


def account(envelopes: Sequence[Envelope], dead: Sequence[tuple[Envelope, DecodeOutcome]],
            duplicates: Sequence[tuple[Envelope, Item]], published: Sequence[Scored]) -> BatchAccount:
    """Count every outcome once: a dead letter per dead message, a duplicate or a published
    record per decoded item."""
    acct = BatchAccount()
    for env in envelopes:
        acct.messages_by_topic[env.topic] = acct.messages_by_topic.get(env.topic, 0) + 1
    for env, outcome in dead:
        acct.add(env, "dead_lettered")
        reason = outcome.reason or ""
        acct.dead_letter_reasons[reason] = acct.dead_letter_reasons.get(reason, 0) + 1
    for env, _ in duplicates:
        acct.add(env, "duplicates")
        acct.duplicates_by_topic[env.topic] = acct.duplicates_by_topic.get(env.topic, 0) + 1
    for s in published:
        acct.add(s.envelope, "published")
        acct.published_by_topic[s.topic] = acct.published_by_topic.get(s.topic, 0) + 1
        for provenance, _ in s.model_results:
            key = (provenance.name, s.item.survey)
            acct.scores_by_model[key] = acct.scores_by_model.get(key, 0) + 1
    return acct


# ---------------------------------------------------------------------------------------- commit
def commit_offsets(envelopes: Sequence[Envelope]) -> list[TopicPartition]:
    """``last offset + 1`` for every partition the batch read."""
    offsets: dict[tuple[str, int], int] = {}
    for env in envelopes:
        tp = (env.topic, env.partition)
        offsets[tp] = max(offsets.get(tp, -1), env.offset + 1)
    return [TopicPartition(t, p, o) for (t, p), o in offsets.items()]


def commit(consumer: Committer, envelopes: Sequence[Envelope]) -> list[TopicPartition]:
    """Commit the batch's offsets; returns partitions whose commit was refused because they moved
    to another member (any other failure raises :class:`stream.kafka_clients.CommitError`)."""
    return commit_or_raise(consumer, commit_offsets(envelopes))
