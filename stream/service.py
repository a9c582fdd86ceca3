"""The stream service, and the one place that wires it: :func:`build_service`.

For every message on the input topics::

    consume (micro-batch by size or time) -> decode (worker process) -> Redis dedup check
      -> preprocess + infer (engines) -> produce one record per input (+ dead letters)
      -> wait for every delivery report -> mark published in Redis -> commit offset + 1

Delivery guarantee: at-least-once from Kafka, exactly-once *in effect* for published records.
Offsets are committed only after the outputs are acknowledged and marked in Redis, so a crash
never loses an input. A crash in the window between the broker's acknowledgement of an output
and the Redis mark (one ``SET`` pipeline, milliseconds) republishes that batch's records once
after restart: the only duplicate window, and documented in README.

Batches are pipelined: while batch *n* is scored in this process, batch *n+1* decodes in a worker
process (``batch.max_in_flight`` bounds how many are held). On partition revocation every held
batch is finished and committed before the partitions go; on partition loss they are dropped
(the new owner resumes from committed offsets; Redis marks stop double publishing).
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from stream import __version__
from schemas.alert import InputKind
from stream.config import Settings
from stream.dedup import DedupUnavailable, RedisDedup
from stream.kafka_clients import DeliveryTracker, commit_or_raise, flush_or_raise, make_consumer, producer_config
from stream.metrics import Metrics, MetricsServer
from stream.pipeline import DecodeOutcome, Envelope, StageTimer, decode_values, dedup_candidates, score_items
from stream.stack import die_with_parent

__all__ = ["Service", "ServiceStopped", "build_service", "load_runners"]

log = structlog.get_logger(__name__)

#: room left for a dead letter's headers under the producer's message.max.bytes
DEAD_LETTER_HEADER_ROOM = 64 * 1024

REAL_BOGUS_MODEL = "realbogus"


class ServiceStopped(RuntimeError):
    """Stop was requested while a batch waited on Redis: the batch is left uncommitted."""


@dataclass
class _Batch:
    envelopes: list[Envelope]
    decoded: cf.Future  # -> (list[DecodeOutcome], seconds)
    consumed_at_ms: int


class _Immediate(cf.Future):
    """A future already holding its result (decode without worker processes)."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__()
        try:
            self.set_result(fn())
        except BaseException as exc:  # noqa: BLE001
            self.set_exception(exc)


@dataclass
class Service:
    """A consumer-group member that classifies its partitions. Build it with :func:`build_service`."""

    settings: Settings
    consumer: Consumer
    producer: Producer
    dedup: RedisDedup
    runners: dict[InputKind, list[Any]]
    metrics: Metrics
    decode_pool: cf.ProcessPoolExecutor | None = None
    metrics_server: MetricsServer | None = None
    #: False when the runners were handed in (tests share them): close() leaves them open.
    owns_runners: bool = True
    #: Dead letters carry the original value up to this size (the producer's message.max.bytes
    #: less room for headers); a bigger one (a raw HST frame over decode.max_message_bytes, say)
    #: is dead-lettered without its value, which stays at the source topic/partition/offset, rather
    #: than failing to produce and stopping the line on every restart.
    dead_letter_max_value_bytes: int = 10485760 - DEAD_LETTER_HEADER_ROOM
    _stop: threading.Event = field(default_factory=threading.Event)
    _pending: deque = field(default_factory=deque)
    _last_lag_update: float = 0.0
    _assigned_at: float | None = None
    _failed: bool = False

    # ------------------------------------------------------------------ lifecycle
    def request_stop(self, *_: object) -> None:
        """Finish the batches in hand, flush, commit and close (SIGTERM / SIGINT)."""
        self._stop.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)

    def run(self, *, max_idle_s: float | None = None, max_messages: int | None = None) -> Metrics:
        """Consume until stopped (or idle for ``max_idle_s``, or ``max_messages`` consumed)."""
        k = self.settings.kafka
        topics = list(k.alert_topics) + list(k.exposure_topics)
        self.consumer.subscribe(topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost)
        log.info("service started", topics=topics, group=k.group_id, backend=self.settings.engine.backend,
                 models={kind.value: [r.provenance.name for r in rs] for kind, rs in self.runners.items()})
        bs = self.settings.batch
        idle_since = time.monotonic()
        consumed = 0
        try:
            while not self._stop.is_set():
                messages = self.consumer.consume(num_messages=bs.max_size, timeout=bs.max_wait_ms / 1000.0)
                self.metrics.last_loop_monotonic = time.monotonic()
                envelopes = self._envelopes(messages)
                if envelopes:
                    idle_since = time.monotonic()
                    consumed += len(envelopes)
                    self._pending.append(self._submit(envelopes))
                    self.metrics.in_flight.set(len(self._pending))
                while self._pending and (len(self._pending) >= bs.max_in_flight or not envelopes or self._pending[0].decoded.done()):
                    self._process(self._pending.popleft())
                    self.metrics.in_flight.set(len(self._pending))
                self._update_lag()
                if max_messages is not None and consumed >= max_messages and not self._pending:
                    break
                # idle time counts from the later of the last input and the last assignment (a join takes seconds)
                if (max_idle_s is not None and not self._pending and self._assigned_at is not None
                        and time.monotonic() - max(idle_since, self._assigned_at) > max_idle_s):
                    break
            self._drain()
        except ServiceStopped:
            # Later batches must not be committed past the one left waiting: drop them all.
            self._abandon("stopped while waiting for Redis")
        except BaseException:
            self._abandon("failed")
            raise
        finally:
            self.close()
        return self.metrics

    def _abandon(self, why: str) -> None:
        """Drop every batch in hand uncommitted (their inputs are redelivered to the next owner).

        Committing a later batch would move the offsets past an earlier one that never finished,
        so after a failure nothing more is processed, not even by the revoke callback on close.
        """
        self._failed = True
        dropped = len(self._pending)
        self._pending.clear()
        self.metrics.in_flight.set(0)
        log.warning(f"{why}: batches in hand left uncommitted; they will be redelivered", dropped_batches=dropped)

    def close(self) -> None:
        """Close clients in order: consumer (leaves the group), producer (flushed), pools, Redis."""
        try:
            self.consumer.close()
        except RuntimeError:
            pass  # already closed
        left = self.producer.flush(30)
        if left:
            log.error("producer closed with undelivered records", left=left)
        if self.decode_pool is not None:
            self.decode_pool.shutdown(wait=False, cancel_futures=True)
            self.decode_pool = None
        if self.owns_runners:
            for runners in self.runners.values():
                for runner in runners:
                    runner.close()
        self.runners = {}
        self.dedup.close()
        if self.metrics_server is not None:
            self.metrics_server.close()
            self.metrics_server = None
        totals = self.metrics.totals()
        log.info("service stopped", consumed=totals.consumed, published=totals.published,
                 duplicates=totals.duplicates, dead_lettered=totals.dead_lettered, balanced=totals.balanced)

    # ------------------------------------------------------------------ rebalance callbacks
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.metrics.assigned = bool(partitions) or bool(consumer.assignment())
        self._assigned_at = time.monotonic()
        log.info("partitions assigned", partitions=[f"{p.topic}[{p.partition}]" for p in partitions])

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("partitions revoked: finishing batches in hand", partitions=[f"{p.topic}[{p.partition}]" for p in partitions],
                 batches=len(self._pending))
        if not self._failed:
            self._drain()
        self.metrics.assigned = False

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # The assignment is gone (session timed out): nothing in hand can be committed any more.
        log.warning("partitions lost: dropping uncommitted batches (the new owner resumes from committed offsets)",
                    partitions=[f"{p.topic}[{p.partition}]" for p in partitions], dropped=len(self._pending))
        self._pending.clear()
        self.metrics.in_flight.set(0)
        self.metrics.assigned = False

    def _drain(self) -> None:
        while self._pending:
            self._process(self._pending.popleft())
        self.metrics.in_flight.set(0)

    # ------------------------------------------------------------------ the batch
    def _envelopes(self, messages: Sequence[Any]) -> list[Envelope]:
        out = []
        for m in messages:
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                if err.fatal():
                    raise RuntimeError(f"fatal consumer error: {err}")
                log.warning("consumer error", error=str(err))
                continue
            out.append(Envelope(m.topic(), m.partition(), m.offset(), m.timestamp()[1], m.key(), m.value()))
        return out

    def _submit(self, envelopes: list[Envelope]) -> _Batch:
        values = [e.value for e in envelopes]
        dec = self.settings.decode
        url = self.settings.kafka.schema_registry_url
        if self.decode_pool is None:
            fut: cf.Future = _Immediate(lambda: decode_values(values, dec, url))
        else:
            fut = self.decode_pool.submit(decode_values, values, dec, url)
        return _Batch(envelopes, fut, int(time.time() * 1000))

    def _process(self, batch: _Batch) -> None:
        timer = StageTimer()
        outcomes, decode_s = batch.decoded.result()
        timer.add("decode", decode_s)
        envelopes = batch.envelopes
        self.metrics.batch_size.observe(len(envelopes))
        k = self.settings.kafka

        tracker = DeliveryTracker()
        expected = 0
        candidates: list[tuple[Envelope, Any]] = []
        dead: list[tuple[Envelope, DecodeOutcome]] = []
        for env, outcome in zip(envelopes, outcomes):
            self.metrics.consumed.labels(env.topic).inc()
            if not outcome.ok:
                dead.append((env, outcome))
                continue
            for item in outcome.items:
                if item.kind not in self.runners or not self.runners[item.kind]:
                    dead.append((env, DecodeOutcome(reason="unsupported_kind", detail=f"no model for {item.kind.value} on {env.topic}")))
                else:
                    candidates.append((env, item))

        for env, outcome in dead:
            self._dead_letter(env, outcome, tracker)
            expected += 1

        published = timer.time("dedup", lambda: self._published([item.key for _, item in candidates]))
        fresh, dups = dedup_candidates(candidates, published)

        by_kind: dict[InputKind, list[tuple[Envelope, Any]]] = {}
        for env, item in fresh:
            by_kind.setdefault(item.kind, []).append((env, item))
        outputs: list[tuple[str, Envelope, Any, bytes, list]] = []
        for kind, pairs in by_kind.items():
            items = [item for _, item in pairs]
            results = score_items(items, self.runners[kind], timer)
            classified_ms = int(time.time() * 1000)
            topic = k.exposure_output_topic if kind != InputKind.DIFFERENCE_ALERT else k.output_topic
            for (env, item), model_results in zip(pairs, results):
                outputs.append((topic, env, item, self._encode(env, item, model_results, batch.consumed_at_ms, classified_ms), model_results))

        t0 = time.perf_counter()
        for topic, env, item, value, model_results in outputs:
            headers = [
                ("sc-models", ",".join(f"{p.name}:{p.version}" for p, _ in model_results).encode()),
                ("sc-untrained", b"true" if any(not p.trained for p, _ in model_results) else b"false"),
                ("sc-source", f"{env.topic}/{env.partition}/{env.offset}".encode()),
                ("sc-schema", b"classified/1.0"),
            ]
            self._produce(topic, value, key=str(item.object_id or item.alert_id).encode(), headers=headers,
                          callback=tracker.callback_for(item.key))
            expected += 1
        flush_or_raise(self.producer, tracker, expected, timeout_s=180)
        timer.add("publish", time.perf_counter() - t0)

        destinations = {key: f"{m.topic()}/{m.partition()}/{m.offset()}" for key, m in tracker.delivered.items() if isinstance(key, str)}
        timer.time("dedup", lambda: self._mark(destinations))

        now_s = time.time()
        for _, env, _, _, _ in outputs:
            if env.timestamp_ms > 0:
                self.metrics.latency.observe(max(0.0, now_s - env.timestamp_ms / 1000.0))
        for env, _ in dead:
            self.metrics.count(env.topic, env.partition, "consumed")
            self.metrics.count(env.topic, env.partition, "dead_lettered")
        for env, _ in dups:
            self.metrics.duplicates.labels(env.topic).inc()
            self.metrics.count(env.topic, env.partition, "consumed")
            self.metrics.count(env.topic, env.partition, "duplicates")
        for topic, env, _, _, _ in outputs:
            self.metrics.published.labels(topic).inc()
            self.metrics.count(env.topic, env.partition, "consumed")
            self.metrics.count(env.topic, env.partition, "published")

        offsets: dict[tuple[str, int], int] = {}
        for env in envelopes:
            offsets[(env.topic, env.partition)] = max(offsets.get((env.topic, env.partition), -1), env.offset + 1)
        lost = timer.time("commit", lambda: commit_or_raise(self.consumer, [TopicPartition(t, p, o) for (t, p), o in offsets.items()]))
        if lost:
            log.warning("commit refused for partitions that moved to another member; their new owner resumes (Redis marks prevent republishing)",
                        partitions=[f"{tp.topic}[{tp.partition}]" for tp in lost])
        for stage, seconds in timer.seconds.items():
            self.metrics.stage_seconds.labels(stage).observe(seconds)
        if dead or dups:
            log.info("batch done", messages=len(envelopes), published=len(outputs), duplicates=len(dups), dead_lettered=len(dead))

    def _encode(self, env: Envelope, item: Any, model_results: list, ingested_ms: int, classified_ms: int) -> bytes:
        from schemas.classified_record import build_classified_record, encode_classified  # noqa: PLC0415

        record = build_classified_record(
            item, model_results, source_topic=env.topic, source_partition=env.partition, source_offset=env.offset,
            source_timestamp_ms=env.timestamp_ms, ingested_ms=ingested_ms, classified_ms=classified_ms,
            classifier_version=__version__, real_bogus_model=REAL_BOGUS_MODEL,
        )
        return encode_classified(record)

    def _dead_letter(self, env: Envelope, outcome: DecodeOutcome, tracker: DeliveryTracker) -> None:
        self.metrics.dead_letters.labels(outcome.reason).inc()
        log.warning("dead letter", topic=env.topic, partition=env.partition, offset=env.offset, reason=outcome.reason,
                    detail=outcome.detail[:300])
        headers = [
            ("sc-reason", (outcome.reason or "").encode()),
            ("sc-detail", outcome.detail[:1000].encode()),
            ("sc-source-topic", env.topic.encode()),
            ("sc-source-partition", str(env.partition).encode()),
            ("sc-source-offset", str(env.offset).encode()),
            ("sc-source-timestamp-ms", str(env.timestamp_ms).encode()),
            ("sc-classifier-version", __version__.encode()),
        ]
        if outcome.record_index is not None:
            headers.append(("sc-record-index", str(outcome.record_index).encode()))
        value = env.value or b""
        if len(value) > self.dead_letter_max_value_bytes:
            headers.append(("sc-value-omitted", f"{len(value)} bytes > {self.dead_letter_max_value_bytes}: read it at the "
                                                 f"source topic/partition/offset".encode()))
            value = b""
        self._produce(self.settings.kafka.dead_letter_topic, value, key=env.key, headers=headers,
                      callback=tracker.callback_for(("dlq", env.topic, env.partition, env.offset)))

    def _produce(self, topic: str, value: bytes, *, key: bytes | None, headers: list, callback: Callable) -> None:
        while True:
            try:
                self.producer.produce(topic, value, key=key, headers=headers, on_delivery=callback)
                return
            except BufferError:  # local queue full: serve delivery reports, then try again
                self.producer.poll(0.1)

    # ------------------------------------------------------------------ Redis, with pause and retry
    def _with_redis(self, what: str, fn: Callable[[], Any], fallback: Callable[[], Any]) -> Any:
        rs = self.settings.redis
        delay = rs.retry_initial_s
        while True:
            try:
                result = fn()
                if not self.metrics.redis_up:
                    log.info("redis reachable again: consuming resumes")
                self.metrics.set_redis_up(True)
                return result
            except DedupUnavailable as exc:
                self.metrics.set_redis_up(False)
                if rs.publish_without_dedup:
                    log.warning("redis unreachable: publishing WITHOUT the dedup check (redis.publish_without_dedup = true)", during=what, error=str(exc))
                    return fallback()
                log.warning("redis unreachable: consuming paused, retrying", during=what, retry_in_s=round(delay, 2), error=str(exc))
                if self._stop.wait(delay):
                    raise ServiceStopped(what) from exc
                delay = min(delay * 2, rs.retry_max_s)

    def _published(self, keys: list[str]) -> set[str]:
        return self._with_redis("dedup check", lambda: self.dedup.published(keys), set)

    def _mark(self, destinations: dict[str, str]) -> None:
        self._with_redis("publish mark", lambda: self.dedup.mark(destinations), lambda: None)

    # ------------------------------------------------------------------ lag
    def _update_lag(self, every_s: float = 5.0) -> None:
        now = time.monotonic()
        if now - self._last_lag_update < every_s:
            return
        self._last_lag_update = now
        try:
            assignment = self.consumer.assignment()
            positions = self.consumer.position(assignment) if assignment else []
        except Exception:  # noqa: BLE001 - lag is best effort, never stops the loop
            return
        for tp in positions:
            try:
                _, high = self.consumer.get_watermark_offsets(tp, cached=True)
            except Exception:  # noqa: BLE001
                continue
            if high >= 0 and tp.offset >= 0:
                self.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(0, high - tp.offset))


def load_runners(settings: Settings) -> dict[InputKind, list[Any]]:
    """The models to run per input kind, from the engine registry (refuses untrained models
    unless ``engine.allow_untrained``)."""
    from engines.registry import load_registry  # noqa: PLC0415

    eng = settings.engine
    registry = load_registry()
    kinds = []
    if settings.kafka.alert_topics:
        kinds.append(InputKind.DIFFERENCE_ALERT)
    if settings.kafka.exposure_topics:
        kinds += [InputKind.RAW_EXPOSURE, InputKind.MULTIBAND_CUTOUT]
    runners: dict[InputKind, list[Any]] = {}
    for kind in kinds:
        for card in registry.selected(kind, eng.models):  # "name" or "name@version"
            runners.setdefault(kind, []).append(
                registry.load_runner(f"{card.name}@{card.version}", eng.backend, device=eng.device, cache_dir=eng.cache_dir, allow_untrained=eng.allow_untrained)
            )
    untrained = [r.provenance.name for rs in runners.values() for r in rs if not r.provenance.trained]
    if untrained:
        log.warning("running UNTRAINED models (engine.allow_untrained = true); every record says so", models=untrained)
    return runners


def build_service(settings: Settings, *, runners: dict[InputKind, list[Any]] | None = None, metrics_port: int | None = None,
                  consumer_overrides: dict[str, Any] | None = None) -> Service:
    """The one place the service is wired from its settings."""
    settings.validate()
    if not settings.kafka.bootstrap_servers:
        raise ValueError("kafka.bootstrap_servers is empty: set KAFKA_BOOTSTRAP_SERVERS (or use --embedded)")
    metrics = Metrics()
    owns_runners = runners is None
    runners = runners if runners is not None else load_runners(settings)
    dedup = RedisDedup(settings.redis.url, key_prefix=settings.redis.key_prefix, ttl_s=settings.redis.dedup_ttl_s)
    metrics.set_redis_up(dedup.ping())
    pool = None
    if settings.batch.decode_workers > 0:
        # spawn (not fork: librdkafka threads); workers die with the service even after SIGKILL
        pool = cf.ProcessPoolExecutor(max_workers=settings.batch.decode_workers, mp_context=multiprocessing.get_context("spawn"),
                                      initializer=die_with_parent)
    obs = settings.observability
    # metrics_port None: the configured port (0 there disables the endpoint); an explicit 0 binds a free port
    if metrics_port is None:
        server = MetricsServer(metrics, obs.metrics_host, obs.metrics_port).start() if obs.metrics_port else None
    else:
        server = MetricsServer(metrics, obs.metrics_host, metrics_port).start()
    consumer = make_consumer(settings.kafka, **(consumer_overrides or {}))
    producer_conf = producer_config(settings.kafka)
    producer = Producer(producer_conf)
    return Service(settings=settings, consumer=consumer, producer=producer, dedup=dedup, runners=runners,
                   metrics=metrics, decode_pool=pool, metrics_server=server, owns_runners=owns_runners,
                   dead_letter_max_value_bytes=int(producer_conf["message.max.bytes"]) - DEAD_LETTER_HEADER_ROOM)
