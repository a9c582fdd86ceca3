"""Reading a classified topic as typed records: the Python API behind ``survey-classifier subscribe``.

For notebooks::

    from stream.subscribe import subscribe
    for rec in subscribe("localhost:9092", "classified", where="real_bogus > 0.8"):
        print(rec.alert_id, rec.top_class, rec.real_bogus)

The reader assigns every partition of the topic itself (no consumer-group rebalancing: a
subscriber never moves the service's offsets) and starts from the earliest or latest offset or
from a timestamp (``offsets_for_times``). With ``group_id`` it resumes where that group stopped:
partitions with a committed offset start there (the others at ``start``), and the offset after
each record handed out is committed every few seconds and on close, so a reader that is
stopped and started again continues where it stopped, without gaps (fink-client's ``--group``;
a record in hand when the process is killed may come again: at-least-once). With ``until_end`` it stops once
every partition has reached the end it had when read: librdkafka's partition-EOF events and the
*cached* high watermarks (Tansu answers a stale live watermark query after batched produce).
A message that is not a classified record is counted and logged, never raised mid-stream, once
the topic has shown one classified record; when the first :data:`FOREIGN_AFTER` messages read are
all undecodable the topic is not a classified topic at all (the input alerts topic, read by
mistake) and :class:`NotClassifiedTopic` is raised, naming what the messages are.
:meth:`ClassifiedReader.offsets` gives each partition's position, end offset and lag.

Two Tansu workarounds, harmless on real Kafka: ``start="latest"`` reads past a stale
ListOffsets(latest) answer up to each partition's fetched end, and with a start timestamp the
messages stamped before it are dropped client-side (Tansu's ``offsets_for_times`` answers
offset 0 whatever the time), so "since T" always means Kafka timestamp >= T.

:class:`AlertFetcher` reads one original alert back by topic/partition/offset (for PNGs).
"""
from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import structlog
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, KafkaException, Message, TopicPartition

from stream.offsets import PartitionOffsets
from stream.subscribe.filters import Predicate, combine, parse_where
from stream.subscribe.known import top_class, top_classes

__all__ = [
    "SubscribeError",
    "NotClassifiedTopic",
    "FOREIGN_AFTER",
    "ModelScores",
    "ClassifiedRecord",
    "ReaderStats",
    "ClassifiedReader",
    "AlertFetcher",
    "subscribe",
    "parse_start",
    "list_topics",
]

log = structlog.get_logger(__name__)


def _partition(msg: Message) -> int:
    """A delivered message's partition (librdkafka always sets it; the stubs say Optional)."""
    return cast(int, msg.partition())


def _offset(msg: Message) -> int:
    """A delivered message's offset (always set on a message from poll; Optional in the stubs)."""
    return cast(int, msg.offset())


class SubscribeError(RuntimeError):
    """The topic cannot be read (missing, broker unreachable, bad start position)."""


class NotClassifiedTopic(SubscribeError):
    """The first messages of the topic are none of them classified records: the wrong topic was named."""


#: Undecodable messages, with no classified record before them, after which a topic is judged not classified.
FOREIGN_AFTER = 5


def _what_they_are(value: bytes) -> str:
    """What a message that is not a classified record is, as far as the alert decoders can tell."""
    from schemas.decode import decode_message

    try:
        items = decode_message(value)
    except Exception:  # noqa: BLE001 - anything the decoders refuse is just "not an alert"
        return ""
    kinds = sorted({f"{getattr(i, 'survey', '?')} {getattr(getattr(i, 'kind', None), 'value', 'alert')}" for i in items})
    return f"; they are {', '.join(kinds)} packets (an input topic?)" if kinds else ""


@dataclass(frozen=True)
class ModelScores:
    """One model's provenance and scores inside a classified record."""

    name: str
    version: str
    weights_sha256: str
    backend: str
    trained: bool
    scores: Mapping[str, float]
    #: v1.3: whether the model was checked on the record's survey (None: not stated, before v1.3).
    validated: bool | None = None


@dataclass(frozen=True)
class ClassifiedRecord:
    """One classified record as published by the service, with where it was read from.

    ``topic``/``partition``/``offset``/``timestamp_ms`` locate the classified message itself;
    ``source_*`` locate the alert it was computed from.
    """

    schema_version: str
    survey: str
    kind: str
    alert_id: str
    object_id: str
    ra: float | None
    dec: float | None
    mjd: float | None
    band: str | None
    real_bogus: float | None
    class_scores: Mapping[str, float]
    models: tuple[ModelScores, ...]
    untrained: bool
    survey_scores: Mapping[str, float]
    survey_score_versions: Mapping[str, str]
    source_topic: str | None
    source_partition: int | None
    source_offset: int | None
    source_timestamp_ms: int | None
    ingested_ms: int | None
    classified_ms: int | None
    classifier_version: str
    processing_host: str | None = None
    #: v1.2: "tai" (mjd's time scale); None in records written before v1.2.
    mjd_time_scale: str | None = None
    #: v1.2: the survey ids as the surveys type them (ZTF candid; Rubin diaSourceId, diaObjectId).
    candid: int | None = None
    dia_source_id: int | None = None
    dia_object_id: int | None = None
    #: v1.2: the detection's photometry: ZTF magpsf/sigmapsf (mag), fid, isdiffpos; Rubin psfFlux/psfFluxErr (nJy).
    magpsf: float | None = None
    sigmapsf: float | None = None
    fid: int | None = None
    isdiffpos: str | None = None
    psf_flux: float | None = None
    psf_flux_err: float | None = None
    is_negative: bool | None = None
    #: v1.3: the model whose P(real) is real_bogus; why no validated model scored the input;
    #: the survey's own quality flags (:mod:`schemas.quality`). None in records before v1.3.
    real_bogus_model: str | None = None
    unscored_reason: str | None = None
    quality: Mapping[str, Any] | None = None
    topic: str = ""
    partition: int = -1
    offset: int = -1
    timestamp_ms: int | None = None

    @classmethod
    def from_dict(cls, record: Mapping[str, Any], *, topic: str = "", partition: int = -1, offset: int = -1,
                  timestamp_ms: int | None = None) -> ClassifiedRecord:
        """Build from a decoded record (``schemas.classified_record.decode_classified``); missing optionals are None."""
        def opt_float(name: str) -> float | None:
            v = record.get(name)
            return None if v is None else float(v)

        def opt_int(name: str) -> int | None:
            v = record.get(name)
            return None if v is None else int(v)

        models = tuple(
            ModelScores(name=str(m.get("name", "")), version=str(m.get("version", "")),
                        weights_sha256=str(m.get("weights_sha256", "") or ""), backend=str(m.get("backend", "") or ""),
                        trained=bool(m.get("trained", False)), scores=dict(m.get("scores") or {}),
                        validated=m.get("validated"))
            for m in (record.get("models") or [])
        )
        return cls(
            schema_version=str(record.get("schema_version", "")), survey=str(record.get("survey", "")),
            kind=str(record.get("kind", "")), alert_id=str(record.get("alert_id", "")),
            object_id=str(record.get("object_id", "")), ra=opt_float("ra"), dec=opt_float("dec"), mjd=opt_float("mjd"),
            band=record.get("band"), real_bogus=opt_float("real_bogus"),
            class_scores={str(k): float(v) for k, v in (record.get("class_scores") or {}).items()},
            models=models, untrained=bool(record.get("untrained", False)),
            survey_scores={str(k): float(v) for k, v in (record.get("survey_scores") or {}).items() if v is not None},
            survey_score_versions={str(k): str(v) for k, v in (record.get("survey_score_versions") or {}).items()},
            source_topic=record.get("source_topic"), source_partition=opt_int("source_partition"),
            source_offset=opt_int("source_offset"), source_timestamp_ms=opt_int("source_timestamp_ms"),
            ingested_ms=opt_int("ingested_ms"), classified_ms=opt_int("classified_ms"),
            classifier_version=str(record.get("classifier_version", "")),
            processing_host=record.get("processing_host"), mjd_time_scale=record.get("mjd_time_scale"),
            candid=opt_int("candid"), dia_source_id=opt_int("dia_source_id"), dia_object_id=opt_int("dia_object_id"),
            magpsf=opt_float("magpsf"), sigmapsf=opt_float("sigmapsf"), fid=opt_int("fid"), isdiffpos=record.get("isdiffpos"),
            psf_flux=opt_float("psf_flux"), psf_flux_err=opt_float("psf_flux_err"),
            is_negative=None if record.get("is_negative") is None else bool(record["is_negative"]),
            real_bogus_model=record.get("real_bogus_model"), unscored_reason=record.get("unscored_reason"),
            quality=None if record.get("quality") is None else dict(record["quality"]),
            topic=topic, partition=partition, offset=offset, timestamp_ms=timestamp_ms,
        )

    @property
    def top_class(self) -> str | None:
        """The most probable class of the record's first class model, named with its model
        (``acai.variable``); None without class scores. Each model's own top: :attr:`top_classes`."""
        top = top_class(self.class_scores)
        return None if top is None else top[0]

    @property
    def top_prob(self) -> float | None:
        top = top_class(self.class_scores)
        return None if top is None else top[1]

    @property
    def top_classes(self) -> dict[str, tuple[str, float]]:
        """Per class model: its most probable class key and score (models are never compared)."""
        return top_classes(self.class_scores)

    def model_score(self, model: str, label: str) -> float | None:
        """One model's score by name, e.g. ``model_score("braai", "real")`` (ZTF's drb model,
        recomputed) or ``model_score("acai", "drb_from_braai_d6_m9")``; None if it did not run."""
        for m in self.models:
            if m.name == model and label in m.scores:
                return float(m.scores[label])
        return None

    @property
    def latency_ms(self) -> int | None:
        """Classified time minus the source alert's Kafka timestamp (the end-to-end latency)."""
        if self.classified_ms is None or self.source_timestamp_ms is None:
            return None
        return self.classified_ms - self.source_timestamp_ms

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict: the record's fields plus where it was read (topic/partition/offset)."""
        data = asdict(self)
        data["class_scores"] = dict(self.class_scores)
        data["survey_scores"] = dict(self.survey_scores)
        data["survey_score_versions"] = dict(self.survey_score_versions)
        data["models"] = [dict(asdict(m), scores=dict(m.scores)) for m in self.models]
        return data


@dataclass
class ReaderStats:
    read: int = 0
    kept: int = 0
    undecodable: int = 0


def parse_start(start: str | int | float | datetime) -> str | int:
    """``"earliest"``, ``"latest"`` or a timestamp in Unix milliseconds.

    Accepts ints/floats as Unix ms, datetimes, ISO-8601 text (naive = UTC) or digits.
    """
    if isinstance(start, datetime):
        moment = start if start.tzinfo else start.replace(tzinfo=UTC)
        return int(moment.timestamp() * 1000)
    if isinstance(start, (int, float)) and not isinstance(start, bool):
        return int(start)
    text = str(start).strip()
    if text in ("earliest", "latest"):
        return text
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise SubscribeError(f"start {start!r} is not earliest, latest, Unix milliseconds or an ISO-8601 time") from exc
    return parse_start(moment)


def _base_config(bootstrap_servers: str, client_config: Mapping[str, Any] | None) -> dict[str, Any]:
    from stream.kafka_logs import client_logger

    conf: dict[str, Any] = {"bootstrap.servers": bootstrap_servers, "logger": client_logger()}
    conf.update(client_config or {})
    conf.update({
        # A private group id: the reader assigns partitions itself and never commits.
        "group.id": conf.get("group.id") or f"survey-classifier-subscribe-{uuid.uuid4().hex[:12]}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
    })
    return conf


def _default_decoder(schema_registry_url: str | None = None) -> Callable[[bytes], dict]:
    """Decodes records framed with our fixed ids, and with a registry URL those framed with its ids."""
    from schemas.classified_record import decode_classified

    if not schema_registry_url:
        return decode_classified
    from stream.output_registry import registry_schema_lookup

    lookup = registry_schema_lookup(schema_registry_url)
    return lambda value: decode_classified(value, lookup)


class ClassifiedReader:
    """Iterates a classified topic as :class:`ClassifiedRecord`; use as a context manager.

    ``predicate`` (flags) and ``where`` (expression) are combined: a record is kept when both hold.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        *,
        where: str | None = None,
        predicate: Predicate | None = None,
        start: str | int | float | datetime = "earliest",
        until_end: bool = True,
        max_records: int | None = None,
        client_config: Mapping[str, Any] | None = None,
        poll_timeout_s: float = 0.5,
        metadata_timeout_s: float = 15.0,
        decoder: Callable[[bytes], dict] | None = None,
        schema_registry_url: str | None = None,
        group_id: str | None = None,
        commit_every_s: float = 5.0,
    ) -> None:
        self.topic = topic
        self.until_end = until_end
        self.max_records = max_records
        self.poll_timeout_s = poll_timeout_s
        self.predicate = combine([predicate, parse_where(where) if where else None])
        self.start = parse_start(start)
        self.stats = ReaderStats()
        self._decode = decoder or _default_decoder(schema_registry_url)
        self.group_id = group_id
        self.commit_every_s = commit_every_s
        self._to_commit: dict[int, int] = {}
        self._last_commit = time.monotonic()
        #: The next offset to read in each partition, as far as this reader got (messages and ends seen).
        self._next: dict[int, int] = {}
        self._bootstrap = bootstrap_servers
        self._client_config = dict(client_config or {})
        conf = _base_config(bootstrap_servers, client_config)
        if group_id:
            conf["group.id"] = group_id
        self._consumer = Consumer(conf)
        self._closed = False
        self._pending: list[Any] = []
        self._eof_at_start: set[int] = set()  # partitions already read to their end while assigning
        #: Tansu answers offsets_for_times with too early an offset: older messages are dropped here.
        self._since_ms = self.start if isinstance(self.start, int) else None
        try:
            self._partitions = self._assign(metadata_timeout_s)
        except BaseException:
            self._consumer.close()
            raise

    def _assign(self, timeout_s: float) -> list[int]:
        try:
            meta = self._consumer.list_topics(self.topic, timeout=timeout_s)
        except KafkaException as exc:
            raise SubscribeError(f"cannot read metadata of topic {self.topic}: {exc}") from exc
        info = meta.topics.get(self.topic)
        if info is None or info.error is not None or not info.partitions:
            raise SubscribeError(f"topic {self.topic} does not exist ({info.error if info else 'not in metadata'})")
        partitions = sorted(info.partitions)
        if self.start == "earliest":
            tps = [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in partitions]
        elif self.start == "latest":
            tps = [TopicPartition(self.topic, p, OFFSET_END) for p in partitions]
        else:
            try:
                found = self._consumer.offsets_for_times([TopicPartition(self.topic, p, int(self.start)) for p in partitions], timeout=timeout_s)
            except KafkaException as exc:
                raise SubscribeError(f"offsets_for_times on {self.topic} failed: {exc}") from exc
            # -1: no message at or after that time in this partition: start at its end.
            tps = [TopicPartition(self.topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_END) for tp in found]
        if self.group_id:
            tps = self._resume_from_committed(tps, timeout_s)
        self._consumer.assign(tps)
        if self.start == "latest" and not self.group_id:
            self._skip_to_fetched_end(partitions, timeout_s)
        log.debug("subscribe_assigned", topic=self.topic, partitions=partitions, start=self.start)
        return partitions

    def _resume_from_committed(self, tps: list[TopicPartition], timeout_s: float) -> list[TopicPartition]:
        """Each partition from the group's committed offset where there is one, else from ``start``."""
        try:
            committed = self._consumer.committed([TopicPartition(self.topic, tp.partition) for tp in tps], timeout=timeout_s)
        except KafkaException as exc:
            raise SubscribeError(f"reading the committed offsets of group {self.group_id} failed: {exc}") from exc
        at = {tp.partition: tp.offset for tp in committed if tp.offset >= 0}
        log.info("subscribe_resumes", group=self.group_id, topic=self.topic, committed={str(p): o for p, o in sorted(at.items())})
        return [TopicPartition(self.topic, tp.partition, at.get(tp.partition, tp.offset)) for tp in tps]

    def commit(self) -> None:
        """Commit the offset after every record handed out so far (``group_id`` only)."""
        if not self.group_id or not self._to_commit:
            return
        offsets = [TopicPartition(self.topic, p, o) for p, o in sorted(self._to_commit.items())]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            log.warning("subscribe_commit_failed", group=self.group_id, error=str(exc))
            return
        self._to_commit.clear()
        self._last_commit = time.monotonic()

    def _done_with(self, msg: Any) -> None:
        if self.group_id:
            self._to_commit[msg.partition()] = msg.offset() + 1
            if time.monotonic() - self._last_commit >= self.commit_every_s:
                self.commit()

    def _skip_to_fetched_end(self, partitions: list[int], timeout_s: float) -> None:
        """Move past messages a stale "latest" offset left behind, up to each partition's EOF.

        Tansu answers ListOffsets(latest) with a stale offset after batched produce; the end a
        fetch reports is right. On real Kafka this returns after one fetch (EOF at once).
        Messages of a partition that arrive after its EOF, while others are still being
        skipped, are kept for the caller.
        """
        at_eof: set[int] = set()
        deadline = time.monotonic() + timeout_s
        while at_eof != set(partitions):
            if time.monotonic() > deadline:
                raise SubscribeError(f"could not find the end of {self.topic} within {timeout_s:.0f} s")
            msg = self._consumer.poll(0.2)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    at_eof.add(_partition(msg))
                elif err.fatal() or not err.retriable():
                    raise SubscribeError(f"reading {self.topic} failed: {err}")
                continue
            if msg.partition() in at_eof:
                self._pending.append(msg)
        self._eof_at_start = at_eof - {m.partition() for m in self._pending}

    def _at_end_by_cached_watermarks(self) -> bool:
        """Every partition's position has reached its cached high watermark (fallback to EOF events)."""
        try:
            positions = self._consumer.position([TopicPartition(self.topic, p) for p in self._partitions])
        except KafkaException:
            return False
        for tp in positions:
            try:
                low, high = self._consumer.get_watermark_offsets(TopicPartition(self.topic, tp.partition), cached=True)
            except KafkaException:
                return False
            if high < 0:
                return False  # not known yet: no fetch response seen
            position = tp.offset if tp.offset >= 0 else None
            if (position if position is not None else low) < high:
                return False
        return True

    def __iter__(self) -> Iterator[ClassifiedRecord]:
        at_eof: set[int] = set(self._eof_at_start)
        if self.until_end and at_eof >= set(self._partitions):
            return
        idle_polls = 0
        while self.max_records is None or self.stats.kept < self.max_records:
            msg = self._pending.pop(0) if self._pending else self._consumer.poll(self.poll_timeout_s)
            if msg is None:
                idle_polls += 1
                if self.until_end and idle_polls >= 2 and self._at_end_by_cached_watermarks():
                    return
                continue
            idle_polls = 0
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    at_eof.add(_partition(msg))
                    if _offset(msg) >= 0:
                        self._next[_partition(msg)] = max(self._next.get(_partition(msg), 0), _offset(msg))
                    if self.until_end and at_eof >= set(self._partitions):
                        return
                    continue
                if err.fatal() or not err.retriable():
                    raise SubscribeError(f"reading {self.topic} failed: {err}")
                log.warning("transient_consumer_error", topic=self.topic, error=str(err))
                continue
            at_eof.discard(msg.partition())
            self._next[_partition(msg)] = _offset(msg) + 1
            ts_type, ts = msg.timestamp()
            if self._since_ms is not None and ts_type != 0 and ts < self._since_ms:
                self._done_with(msg)
                continue
            self.stats.read += 1
            try:
                data = self._decode(msg.value() or b"")
            except Exception as exc:  # a foreign message is data, not a crash
                self.stats.undecodable += 1
                error = f"{type(exc).__name__}: {exc}"
                if self.stats.read == self.stats.undecodable:  # no classified record yet: is this the wrong topic?
                    if self.stats.undecodable >= FOREIGN_AFTER:
                        raise NotClassifiedTopic(
                            f"topic {self.topic} does not hold classified records: the first {self.stats.undecodable} "
                            f"messages read are not ({error}){_what_they_are(msg.value() or b'')}; read the service's "
                            f"output topic (kafka.output_topic, default 'classified'; --list-topics lists them)") from exc
                    log.debug("not_a_classified_record", topic=msg.topic(), partition=msg.partition(), offset=msg.offset(),
                              error=error)
                else:
                    log.warning("not_a_classified_record", topic=msg.topic(), partition=msg.partition(), offset=msg.offset(),
                                error=error)
                self._done_with(msg)
                continue
            if not self.predicate(data):
                self._done_with(msg)
                continue
            record = ClassifiedRecord.from_dict(data, topic=cast(str, msg.topic()), partition=_partition(msg), offset=_offset(msg),
                                                timestamp_ms=ts if ts_type != 0 else None)
            self.stats.kept += 1
            yield record
            self._done_with(msg)  # handed out and handled by the caller: safe to move past it

    def offsets(self) -> list[PartitionOffsets]:
        """Each partition's position (the next offset this reader would read), end offset and lag.

        The ends are the high watermarks of fetch responses (right on Tansu too): this reader's
        latest, or, for a partition it has not fetched yet, one fetch by a throw-away consumer.
        Call before :meth:`close`.
        """
        from stream.offsets import fetched_watermarks

        if self._closed:
            return [PartitionOffsets(self.topic, p, self._next.get(p), None) for p in self._partitions]
        marks: dict[int, tuple[int, int] | None] = {}
        position: dict[int, int | None] = {}
        for p in self._partitions:
            position[p] = self._next.get(p)
            try:
                low, high = self._consumer.get_watermark_offsets(TopicPartition(self.topic, p), cached=True)
                marks[p] = (max(low, 0), high) if high >= 0 else None
                if position[p] is None:
                    (tp,) = self._consumer.position([TopicPartition(self.topic, p)])
                    position[p] = tp.offset if tp.offset >= 0 else None
            except KafkaException:
                marks[p] = None
        missing = [p for p in self._partitions if marks[p] is None]
        if missing:
            try:
                fetched = fetched_watermarks(self._bootstrap, [(self.topic, p) for p in missing], client_config=self._client_config,
                                             timeout_s=5.0)
            except Exception as exc:  # noqa: BLE001 - offsets are a report: unknown, never a crash
                log.debug("end_offsets_not_fetched", topic=self.topic, error=str(exc))
                fetched = {}
            for p in missing:
                marks[p] = fetched.get((self.topic, p))
        out = []
        for p in self._partitions:
            mark = marks[p]
            at = position[p]
            if at is None and mark is not None and self.start == "earliest" and not self.group_id:
                at = mark[0]  # nothing handed out from it yet: the reader stands at its start
            out.append(PartitionOffsets(self.topic, p, at, None if mark is None else mark[1]))
        return out

    def close(self) -> None:
        """Leave the topic (idempotent)."""
        if not self._closed:
            self._closed = True
            try:
                self.commit()
            finally:
                self._consumer.close()

    def __enter__(self) -> ClassifiedReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def subscribe(
    bootstrap_servers: str,
    topic: str,
    *,
    where: str | None = None,
    start: str | int | float | datetime = "earliest",
    until_end: bool = True,
    max_records: int | None = None,
    client_config: Mapping[str, Any] | None = None,
    schema_registry_url: str | None = None,
    group_id: str | None = None,
) -> Iterator[ClassifiedRecord]:
    """Typed classified records of ``topic`` that match ``where`` (see :mod:`stream.subscribe.filters`).

    ``start``: ``"earliest"``, ``"latest"``, Unix milliseconds, a datetime or ISO-8601 text.
    ``until_end``: stop at the end of the topic (else wait for new records);
    ``max_records``: stop after that many kept records. The consumer is closed when the
    iterator is exhausted or closed. ``schema_registry_url``: where the service registers its
    schema (records framed with registry ids); records with our fixed ids read either way.
    ``group_id``: resume where that group stopped, committing as records are handed out.
    """
    with ClassifiedReader(bootstrap_servers, topic, where=where, start=start, until_end=until_end,
                          max_records=max_records, client_config=client_config,
                          schema_registry_url=schema_registry_url, group_id=group_id) as reader:
        yield from reader


def list_topics(bootstrap_servers: str, client_config: Mapping[str, Any] | None = None,
                timeout_s: float = 10.0) -> dict[str, int]:
    """Topic name -> partition count of every topic on the cluster (internal ``__`` topics left out)."""
    consumer = Consumer(_base_config(bootstrap_servers, client_config))
    try:
        meta = consumer.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise SubscribeError(f"cannot list topics on {bootstrap_servers}: {exc}") from exc
    finally:
        consumer.close()
    return {name: len(t.partitions) for name, t in sorted(meta.topics.items()) if not name.startswith("__")}


@dataclass
class AlertFetcher:
    """Reads single messages back by (topic, partition, offset): assign + seek, one consumer reused."""

    bootstrap_servers: str
    client_config: Mapping[str, Any] | None = None
    timeout_s: float = 10.0
    _consumer: Consumer | None = field(default=None, repr=False)

    def fetch(self, topic: str, partition: int, offset: int) -> bytes:
        if self._consumer is None:
            conf = _base_config(self.bootstrap_servers, self.client_config)
            conf["enable.partition.eof"] = False
            self._consumer = Consumer(conf)
        self._consumer.assign([TopicPartition(topic, partition, offset)])
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            msg = self._consumer.poll(min(0.5, max(0.01, deadline - time.monotonic())))
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.fatal() or not err.retriable():
                    raise SubscribeError(f"fetching {topic}[{partition}]@{offset} failed: {err}")
                continue
            if msg.offset() == offset and msg.partition() == partition:
                return msg.value() or b""
            if _offset(msg) > offset:
                break
        raise SubscribeError(f"alert {topic}[{partition}]@{offset} not found within {self.timeout_s:.0f} s (deleted or never written)")

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def __enter__(self) -> AlertFetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

