"""The stream service, and the one place that wires it: :func:`build_service`.

For every message on the input topics::

    consume (micro-batch by size or time) -> decode (worker process) -> Redis dedup check
      -> preprocess + infer (engines) -> produce one record per input (+ dead letters)
      -> wait for every delivery report -> mark published in Redis -> commit offset + 1

The batch step runs the named stages of :mod:`stream.stages` (triage, dedup, score, publish,
account, commit); this module owns the loop, the rebalance callbacks, Redis's pause-and-retry
policy, the metrics and the wiring of the real collaborators.

Delivery guarantee: at-least-once from Kafka, exactly-once *in effect* for published records.
Offsets are committed only after the outputs are acknowledged and marked in Redis, so a crash
never loses an input. A crash in the window between the broker's acknowledgement of an output
and the Redis mark (one ``SET`` pipeline, milliseconds) republishes that batch's records once
after restart: the only duplicate window, and documented in stream/README.md.

Batches are pipelined: while batch *n* is scored in this process, batch *n+1* decodes in a worker
process (``batch.max_in_flight`` bounds how many are held). On partition revocation every held
batch is finished and committed before the partitions go; on partition loss they are dropped
(the new owner resumes from committed offsets; Redis marks stop double publishing).
"""
from __future__ import annotations

import concurrent.futures as cf
import os
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from engines.scoring import ModelRegistry, Runner, survey_scope
from schemas.alert import InputKind
from schemas.decode import SchemaRegistryError, slow_history_reads
from stream import __version__, stages
from stream.config import Settings
from stream.decode_pool import DecodeAbandoned, DecodeLimits, DecodePool, decode_in_process, wait_for_decode
from stream.dedup import DedupUnavailable, RedisDedup
from stream.envelope import DecodeOutcome, Envelope, StageTimer
from stream.kafka_clients import make_consumer, producer_config
from stream.metrics import HealthServer, Metrics, MetricsServer
from stream.output_registry import OutputFraming, register_output_schemas
from stream.schema_registry import SchemaLookups, redact_urls_in

__all__ = ["Service", "ServiceStopped", "build_service", "load_runners"]

log = structlog.get_logger(__name__)

#: Python's thread switch interval while a decode pool runs (the default is 5 ms): see build_service.
DECODE_SWITCH_INTERVAL_S = 0.0002

#: While Redis or the schema registry does not answer, the service asks it again this often
#: (seconds) to resume at once, whatever the backoff between logged retries has grown to.
PROBE_S = 1.0

#: room left for a dead letter's headers under the producer's message.max.bytes
DEAD_LETTER_HEADER_ROOM = 64 * 1024

#: default of Service.decoded_bytes_budget
DECODED_BYTES_BUDGET = 512 * 1024 * 1024

#: room left under message.max.bytes for a record's batch framing (librdkafka counts it)
RECORD_FRAMING_ROOM = 1024


class ServiceStopped(RuntimeError):
    """Stop was requested while a batch waited on Redis: the batch is left uncommitted."""


@dataclass
class _Batch:
    envelopes: list[Envelope]
    decoded: cf.Future  # -> (list[DecodeOutcome], seconds)
    consumed_at_ms: int
    #: bytes of the decoded arrays, once decoded (see Service.decoded_bytes_budget)
    decoded_bytes: int | None = None

    def held_bytes(self) -> int:
        """Bytes of the arrays this batch holds decoded (0 while it decodes, or if decode failed)."""
        if self.decoded_bytes is None and self.decoded.done():
            try:
                outcomes, _ = self.decoded.result()
            except BaseException:  # noqa: BLE001 - a failed decode holds nothing; _process raises it
                self.decoded_bytes = 0
            else:
                self.decoded_bytes = sum(_item_bytes(item) for outcome in outcomes for item in outcome.items)
        return self.decoded_bytes or 0


def _item_bytes(item: Any) -> int:
    """Bytes of an Alert's stamps and their planes, or of an Exposure's images."""
    images = getattr(item, "images", None)
    if images is not None:
        return sum(int(a.nbytes) for a in images.values())
    total = 0
    for name in ("science", "template", "difference"):
        stamp = getattr(item, name, None)
        if stamp is not None:
            total += int(stamp.data.nbytes) + sum(int(a.nbytes) for a in stamp.extra.values())
    return total


class _Immediate(cf.Future):
    """A future already holding its result (decode without worker processes)."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__()
        try:
            self.set_result(fn())
        except BaseException as exc:  # noqa: BLE001 - a future carries whatever the call raised, as concurrent.futures does
            self.set_exception(exc)


@dataclass
class Service:
    """A consumer-group member that classifies its partitions. Build it with :func:`build_service`."""

    settings: Settings
    consumer: Consumer
    producer: stages.Publisher
    dedup: RedisDedup
    runners: dict[InputKind, list[Runner]]
    metrics: Metrics
    decode_pool: DecodePool | None = None
    metrics_server: MetricsServer | None = None
    #: ``/healthz`` and ``/readyz`` on their own port (``observability.health_port``); None when 0.
    health_server: HealthServer | None = None
    #: False when the runners were handed in (tests share them): close() leaves them open.
    owns_runners: bool = True
    #: Dead letters carry the original value up to this size (the producer's message.max.bytes
    #: less room for headers); a bigger one (a raw HST frame over decode.max_message_bytes, say)
    #: is dead-lettered without its value, which stays at the source topic/partition/offset, rather
    #: than failing to produce and stopping the line on every restart.
    dead_letter_max_value_bytes: int = 10485760 - DEAD_LETTER_HEADER_ROOM
    #: A classified record whose key, value and headers exceed this (the producer's
    #: message.max.bytes less room for the batch framing) is dead-lettered as unscorable before
    #: produce(), which would raise MSG_SIZE_TOO_LARGE and stop the line.
    max_record_bytes: int = 10485760 - RECORD_FRAMING_ROOM
    #: Written into every classified record's ``processing_host`` (schema v1.1): the host name
    #: (the pod name under Kubernetes) and the process id, ``host:pid``, so a record can be
    #: traced to the member that scored it even with several members on one host.
    processing_host: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    #: Registry schema ids per output topic (empty: the fixed shipped ids).
    framing: OutputFraming = field(default_factory=OutputFraming)
    #: Schema registry lookups, in this process, cached for every batch (made on first use).
    schema_lookups: SchemaLookups | None = None
    #: Decoded bytes (stamps, images) the batches waiting to be scored may hold together: past it,
    #: no more is consumed until the oldest is scored (batch.max_in_flight alone let 3 batches of
    #: 256 large items reach tens of GB). With the stamp caps per survey a ZTF batch of 256 holds
    #: ~12 MB; the budget binds on Rubin alerts with large cutouts and on exposures.
    decoded_bytes_budget: int = DECODED_BYTES_BUDGET
    #: Threads that score a batch's chunks at once (``engine.score_threads``); None: this thread alone.
    score_pool: cf.ThreadPoolExecutor | None = None
    #: this process's slow history reads when the service was built (in-process decode counts from here)
    _slow_reads_at_start: int = field(default_factory=slow_history_reads, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event)
    #: When stop was requested (monotonic): decode waits after it share one grace of decode.timeout_s.
    _stop_requested_at: float | None = None
    _pending: deque = field(default_factory=deque)
    _last_lag_update: float = 0.0
    _assigned_at: float | None = None
    _failed: bool = False

    # ------------------------------------------------------------------ lifecycle
    def request_stop(self, *_: object) -> None:
        """Finish the batches in hand, flush, commit and close (SIGTERM / SIGINT)."""
        if self._stop_requested_at is None:
            self._stop_requested_at = time.monotonic()
        self._stop.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)

    def run(self, *, max_idle_s: float | None = None, max_messages: int | None = None) -> Metrics:
        """Consume until stopped (or idle for ``max_idle_s``, or ``max_messages`` consumed)."""
        k = self.settings.kafka
        topics = list(k.alert_topics) + list(k.exposure_topics)
        self.consumer.subscribe(topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost)
        log.info("service_started", topics=topics, group=k.group_id, backend=self.settings.engine.backend,
                 models={kind.value: [f"{r.provenance.name}@{r.provenance.backend}" for r in rs] for kind, rs in self.runners.items()},
                 decode_workers=self.decode_pool.workers if self.decode_pool is not None else 0,
                 engine_threads=self.settings.engine.thread_count(), score_threads=self.settings.engine.score_thread_count())
        bs = self.settings.batch
        idle_since = time.monotonic()
        consumed = 0
        try:
            while not self._stop.is_set():
                if self._pending and self._held_bytes() >= self.decoded_bytes_budget:
                    # over the memory budget: score the oldest before consuming more
                    self.metrics.last_loop_monotonic = time.monotonic()
                    self._process(self._pending.popleft())
                    self.metrics.in_flight.set(len(self._pending))
                    continue
                # a decoded batch waiting: take what the consumer holds already, without waiting for more
                wait_s = 0.0 if self._pending and self._pending[0].decoded.done() else bs.max_wait_ms / 1000.0
                messages = self.consumer.consume(num_messages=bs.max_size, timeout=wait_s)
                self.metrics.last_loop_monotonic = time.monotonic()
                envelopes = self._envelopes(messages)
                if envelopes:
                    idle_since = time.monotonic()
                    consumed += len(envelopes)
                    self._pending.append(self._submit(envelopes))
                    self.metrics.in_flight.set(len(self._pending))
                # One batch per turn, so the next is consumed and handed to the decoders before the
                # one after it is scored: the decode pool always has work queued while this thread
                # scores (processing every decoded batch at once left the workers idle, then this
                # thread waiting on them).
                if self._pending and (len(self._pending) >= bs.max_in_flight or not envelopes or self._pending[0].decoded.done()):
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
        log.warning("batches_abandoned", why=why, dropped_batches=dropped, note="left uncommitted; they will be redelivered")

    def close(self) -> None:
        """Close clients in order: consumer (leaves the group), producer (flushed), pools, Redis."""
        try:
            self.consumer.close()
        except RuntimeError:
            pass  # already closed
        left = self.producer.flush(30)
        if left:
            log.error("producer_closed_undelivered", left=left)
        if self.decode_pool is not None:
            self.decode_pool.close()
            self.decode_pool = None
        if self.score_pool is not None:
            self.score_pool.shutdown(wait=True)
            self.score_pool = None
        if self.owns_runners:
            for runners in self.runners.values():
                for runner in runners:
                    runner.close()
        self.runners = {}
        self.dedup.close()
        for server in (self.metrics_server, self.health_server):
            if server is not None:
                server.close()
        self.metrics_server = self.health_server = None
        totals = self.metrics.totals()
        log.info("service_stopped", consumed=totals.consumed, published=totals.published,
                 duplicates=totals.duplicates, dead_lettered=totals.dead_lettered, balanced=totals.balanced)

    # ------------------------------------------------------------------ rebalance callbacks
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.metrics.assigned = bool(partitions) or bool(consumer.assignment())
        self._assigned_at = time.monotonic()
        log.info("partitions_assigned", partitions=[f"{p.topic}[{p.partition}]" for p in partitions])

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("partitions_revoked", note="finishing batches in hand", partitions=[f"{p.topic}[{p.partition}]" for p in partitions],
                 batches=len(self._pending))
        if not self._failed:
            self._drain()
        self.metrics.assigned = False

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # The assignment is gone (session timed out): nothing in hand can be committed any more.
        log.warning("partitions_lost", note="dropping uncommitted batches; the new owner resumes from committed offsets",
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
                log.warning("consumer_error", error=str(err))
                continue
            out.append(Envelope(m.topic(), m.partition(), m.offset(), m.timestamp()[1], m.key(), m.value()))
        return out

    def _submit(self, envelopes: list[Envelope]) -> _Batch:
        values = [e.value for e in envelopes]
        dec = self.settings.decode
        # Schema ids are looked up here, in the supervisor, under one deadline per lookup and with
        # one cache for every batch; the workers get the answers with the batch and never do HTTP.
        # A registry that cannot answer fails the batch's future: _decoded pauses and resubmits.
        if self.schema_lookups is None:
            self.schema_lookups = SchemaLookups(self.settings.kafka.schema_registry_url)
        try:
            schemas = self.schema_lookups.prepare(values)
        except SchemaRegistryError as exc:
            failed: cf.Future = cf.Future()
            failed.set_exception(exc)
            return _Batch(envelopes, failed, int(time.time() * 1000))
        if self.decode_pool is None:
            fut: cf.Future = _Immediate(lambda: decode_in_process(values, dec, schemas))
        else:
            fut = self.decode_pool.submit(values, dec, schemas)
        return _Batch(envelopes, fut, int(time.time() * 1000))

    def _decoded(self, batch: _Batch) -> tuple[list[DecodeOutcome], float]:
        """The batch's decode result; an unreachable or misconfigured schema registry pauses and retries.

        The registry is ours, not the message's: its failure never dead-letters or commits the
        input (it would turn every Rubin alert into a dead letter). Backoff as for Redis.
        """
        rs = self.settings.redis
        delay = rs.retry_initial_s
        paused = False
        while True:
            try:
                result = wait_for_decode(batch.decoded, self._stop, self._stop_grace_left(), self._heartbeat)
            except DecodeAbandoned as exc:
                raise ServiceStopped(str(exc)) from None
            except SchemaRegistryError as exc:
                paused = True
                self.metrics.set_schema_registry_up(False)
                log.warning("schema_registry_unreachable", retry_in_s=round(delay, 2), error=redact_urls_in(str(exc)))
                if self._wait(delay, until=lambda: self._registry_answers(batch.envelopes)):
                    raise ServiceStopped("schema registry") from None
                delay = min(delay * 2, rs.retry_max_s)
                batch.decoded = self._submit(batch.envelopes).decoded
                continue
            if paused:
                self.metrics.set_schema_registry_up(True)
                log.info("schema_registry_reachable_again")
            return result

    def _registry_answers(self, envelopes: Sequence[Envelope]) -> bool:
        """Whether the batch's schema lookups go through now (one GET per id not yet cached)."""
        lookups = self.schema_lookups
        if lookups is None:
            return False
        try:
            lookups.prepare([e.value for e in envelopes])
        except SchemaRegistryError:
            return False
        return True

    def _held_bytes(self) -> int:
        """Decoded bytes of the batches in hand (those still decoding count 0)."""
        return sum(b.held_bytes() for b in self._pending)

    def _stop_grace_left(self) -> float:
        """Seconds a decode may still take once stop is requested: one decode.timeout_s in all."""
        grace = self.settings.decode.timeout_s
        if self._stop_requested_at is None:
            return grace
        return max(0.0, self._stop_requested_at + grace - time.monotonic())

    def _heartbeat(self) -> None:
        self.metrics.last_loop_monotonic = time.monotonic()

    def _scoring_clock(self, timer: StageTimer) -> Callable[[str, float], None]:
        """The stage clock for scoring: adds the seconds and beats the heart after every preprocess
        and inference chunk, so a long batch of big inputs is progress, not a stalled loop. Called
        from the score pool's threads: the additions are locked."""
        lock = threading.Lock()

        def clock(stage: str, seconds: float) -> None:
            with lock:
                timer.add(stage, seconds)
            self._heartbeat()
        return clock

    def _process(self, batch: _Batch) -> None:
        """One batch through the stages (:mod:`stream.stages`), then its offsets committed."""
        timer = StageTimer()
        outcomes, decode_s = self._decoded(batch)
        timer.add("decode", decode_s)
        pool = self.decode_pool
        self.metrics.sync_decode(pool.replaced if pool is not None else 0,
                                 pool.slow_history_reads if pool is not None else slow_history_reads() - self._slow_reads_at_start)
        envelopes = batch.envelopes
        self.metrics.batch_size.observe(len(envelopes))
        k = self.settings.kafka

        triaged = stages.triage(envelopes, outcomes, {kind for kind, rs in self.runners.items() if rs})
        fresh, dups = timer.time("dedup", lambda: stages.dedup(triaged.candidates, self._redis))
        # an input that decoded but cannot be scored, built into a record or produced is dead-lettered
        # as unscorable; the rest of the batch goes on (stages.score isolates it item by item)
        unscorable: list[tuple[Envelope, DecodeOutcome]] = []
        scored = stages.score(fresh, self.runners, self._topics, self._scoring_clock(timer), refused=unscorable, pool=self.score_pool)
        records, scored, refused = stages.classified_messages(
            scored, max_record_bytes=self.max_record_bytes, ingested_ms=batch.consumed_at_ms, classifier_version=__version__,
            processing_host=self.processing_host, frame=self.framing.frame)
        dead = triaged.dead + unscorable + refused

        messages: list[stages.Outgoing] = []
        for env, outcome in dead:
            log.warning("dead_letter", topic=env.topic, partition=env.partition, offset=env.offset, reason=outcome.reason,
                        detail=redact_urls_in(outcome.detail)[:300])
            messages.append(stages.dead_letter_message(env, outcome, topic=k.dead_letter_topic, classifier_version=__version__,
                                                       max_value_bytes=self.dead_letter_max_value_bytes))
        messages += records
        delivered = timer.time("publish", lambda: stages.publish(self.producer, messages))
        timer.time("mark", lambda: self._redis.mark(stages.destinations(delivered)))

        acct = stages.account(envelopes, dead, dups, scored)
        self._record(acct, scored)
        lost = timer.time("commit", lambda: stages.commit(self.consumer, envelopes))
        if lost:
            log.warning("commit_refused_partitions_moved", partitions=[f"{tp.topic}[{tp.partition}]" for tp in lost],
                        note="their new owner resumes; Redis marks prevent republishing")
        for stage, seconds in timer.seconds.items():
            self.metrics.stage_seconds.labels(stage).observe(seconds)
        if dead or dups:
            log.info("batch_done", messages=len(envelopes), published=len(scored), duplicates=len(dups),
                     dead_lettered=len(dead))

    def _record(self, acct: stages.BatchAccount, scored: list[stages.Scored]) -> None:
        """Add a batch's account to the metrics (Prometheus counters and the per-partition reconciliation)."""
        now_s = time.time()
        for s in scored:
            if s.envelope.timestamp_ms > 0:
                self.metrics.latency.observe(max(0.0, now_s - s.envelope.timestamp_ms / 1000.0))
        for topic, n in acct.messages_by_topic.items():
            self.metrics.consumed.labels(topic).inc(n)
        for reason, n in acct.dead_letter_reasons.items():
            self.metrics.dead_letters.labels(reason).inc(n)
        for topic, n in acct.duplicates_by_topic.items():
            self.metrics.duplicates.labels(topic).inc(n)
        for topic, n in acct.published_by_topic.items():
            self.metrics.published.labels(topic).inc(n)
        for (model, survey), n in acct.scores_by_model.items():
            self.metrics.model_scores.labels(model, survey).inc(n)
        for (topic, partition), counts in acct.partitions.items():
            for what, n in counts.items():
                if n:
                    self.metrics.count(topic, partition, what, n)

    # ------------------------------------------------------------------ Redis, with pause and retry
    def _with_redis(self, what: str, fn: Callable[[], Any], fallback: Callable[[], Any]) -> Any:
        rs = self.settings.redis
        delay = rs.retry_initial_s
        while True:
            try:
                result = fn()
                if not self.metrics.redis_up:
                    log.info("redis_reachable_again", note="consuming resumes")
                self.metrics.set_redis_up(True)
                return result
            except DedupUnavailable as exc:
                self.metrics.set_redis_up(False)
                if rs.publish_without_dedup:
                    log.warning("redis_unreachable_publishing_without_dedup", note="redis.publish_without_dedup = true",
                                during=what, error=redact_urls_in(str(exc)))
                    return fallback()
                log.warning("redis_unreachable_paused", during=what, retry_in_s=round(delay, 2), error=redact_urls_in(str(exc)))
                # a Redis that answers but refuses the command (OOM, MISCONF, READONLY) answers
                # PING too: only one that did not answer at all is PINGed to end the wait early
                if self._wait(delay, until=self.dedup.ping if exc.unreachable else None):
                    raise ServiceStopped(what) from exc
                delay = min(delay * 2, rs.retry_max_s)

    def _wait(self, delay: float, until: Callable[[], bool] | None = None) -> bool:
        """Wait ``delay`` seconds before the next try, or until ``until()`` says what we
        wait for answers again (asked every :data:`PROBE_S`); True if stop was requested meanwhile.

        So the line resumes within about a second of Redis or the schema registry coming back,
        not after the rest of a backoff that grows to ``redis.retry_max_s`` (30 s by default:
        half of Rubin's 60 s to publish)."""
        if until is None:
            return self._stop.wait(delay)
        deadline = time.monotonic() + delay
        while (left := deadline - time.monotonic()) > 0:
            if self._stop.wait(min(PROBE_S, left)):
                return True
            if until():
                return False
        return False

    @property
    def _redis(self) -> stages.Dedup:
        """The dedup store as the stages see it: Redis, paused and retried while unreachable."""
        return _PausingDedup(self)

    @property
    def _topics(self) -> stages.OutputTopics:
        k = self.settings.kafka
        return stages.OutputTopics(alerts=k.output_topic, exposures=k.exposure_output_topic)

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
            except Exception:  # noqa: BLE001 - lag is a gauge: a failed lookup skips one update, never the batch
                continue
            if high >= 0 and tp.offset >= 0:
                self.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(0, high - tp.offset))


@dataclass(frozen=True)
class _PausingDedup:
    """:class:`stream.stages.Dedup` over the service's Redis, with its pause-and-retry policy."""

    service: Service

    def published(self, keys: Sequence[str]) -> set[str]:
        return self.service._with_redis("dedup check", lambda: self.service.dedup.published(keys), set)

    def mark(self, destinations: Mapping[str, str]) -> None:
        self.service._with_redis("publish mark", lambda: self.service.dedup.mark(destinations), lambda: None)


def load_runners(settings: Settings, registry: ModelRegistry | None = None) -> dict[InputKind, list[Runner]]:
    """The models to run per input kind, from the engine registry (default: the shipped cards);
    refuses untrained models unless ``engine.allow_untrained``."""
    from engines.backends import usable_cores
    from engines.registry import load_registry
    from engines.scoring import load_kind_runners

    eng = settings.engine
    if registry is None:
        registry = load_registry()
    threads = eng.thread_count()
    if not eng.device.startswith("cuda"):
        import torch

        # preprocessing (and the torch backend) on the CPU: see engine.preprocess_threads
        torch.set_num_threads(eng.preprocess_threads if eng.preprocess_threads > 0 else usable_cores())
    kinds = []
    if settings.kafka.alert_topics:
        kinds.append(InputKind.DIFFERENCE_ALERT)
    if settings.kafka.exposure_topics:
        kinds += [InputKind.RAW_EXPOSURE, InputKind.MULTIBAND_CUTOUT]
    runners: dict[InputKind, list[Runner]] = {}
    for kind in kinds:
        loaded = load_kind_runners(registry, kind, backend=eng.backend, device=eng.device, cache_dir=eng.cache_dir,
                                   models=eng.models, allow_untrained=eng.allow_untrained, backends=eng.backends,
                                   threads=threads, infer_batch=eng.infer_batch_size(), unvalidated=eng.unvalidated_surveys())
        if loaded:
            runners[kind] = loaded
    log_survey_scope([r for rs in runners.values() for r in rs], eng.unvalidated_surveys())
    untrained = [r.provenance.name for rs in runners.values() for r in rs if not r.provenance.trained]
    if untrained:
        log.warning("running_untrained_models", note="engine.allow_untrained = true; every record says so", models=untrained)
    return runners


def log_survey_scope(runners: Sequence[Runner], requested: Mapping[str, Sequence[str]]) -> None:
    """Say at start-up which surveys each model scores, and warn loudly for every model run on a
    survey it was never checked on (``engine.run_unvalidated``)."""
    scope = survey_scope(runners)
    for entry in scope:
        log.info("model_survey_scope", **entry)
        if entry["unvalidated_surveys"]:
            log.warning("running_unvalidated_model", model=entry["model"], surveys=entry["unvalidated_surveys"],
                        note="engine.run_unvalidated: these scores are published with validated = false and stay out of "
                             "real_bogus and class_scores")
    loaded = {entry["model"] for entry in scope}
    for model in sorted(set(requested) - loaded):
        log.warning("run_unvalidated_model_not_loaded", model=model, loaded=sorted(loaded))


def build_service(settings: Settings, *, runners: dict[InputKind, list[Runner]] | None = None, metrics_port: int | None = None,
                  health_port: int | None = None, consumer_overrides: dict[str, Any] | None = None) -> Service:
    """The one place the service is wired from its settings.

    ``metrics_port`` / ``health_port`` None: the configured ports (0 there: that listener is off).
    An explicit port is bound as given, 0 meaning a free one; an explicit ``metrics_port`` with
    ``health_port`` None puts the health listener on a free port too, so tests never take 9109.
    """
    settings.validate()
    if not settings.kafka.bootstrap_servers:
        raise ValueError("kafka.bootstrap_servers is empty: set KAFKA_BOOTSTRAP_SERVERS (or use --embedded)")
    k = settings.kafka  # a schema the registry refuses stops us here, before anything is consumed or published
    framing = register_output_schemas(k.output_schema_registry_url, [k.output_topic] + ([k.exposure_output_topic] if k.exposure_topics else []),
                                      k.output_subject_strategy)
    metrics = Metrics()
    owns_runners = runners is None
    runners = runners if runners is not None else load_runners(settings)
    metrics.set_models(r for rs in runners.values() for r in rs)
    dedup = RedisDedup(settings.redis.url, key_prefix=settings.redis.key_prefix, ttl_s=settings.redis.dedup_ttl_s)
    metrics.set_redis_up(dedup.ping())
    pool = None
    workers = settings.batch.decode_worker_count()
    if workers > 0:
        # The decode pool's supervisor threads read each worker's outcomes from a pipe, one
        # GIL acquisition per read; while this thread scores (Python holding the GIL) each
        # acquisition waited up to the default 5 ms switch interval, which made decoding in the
        # service two to three times slower than decoding alone. A shorter interval lets them in.
        sys.setswitchinterval(DECODE_SWITCH_INTERVAL_S)
        # supervised spawn workers with a time and memory limit; they die with the service even after SIGKILL
        pool = DecodePool(workers, DecodeLimits(timeout_s=settings.decode.timeout_s, worker_memory_mb=settings.decode.worker_memory_mb),
                          nice=settings.batch.decode_worker_nice)
    # engines release the GIL: on the CPU one score thread per core, each engine on one thread (engine.score_threads)
    score_threads = settings.engine.score_thread_count()
    score_pool = cf.ThreadPoolExecutor(score_threads, thread_name_prefix="score") if score_threads > 1 else None
    obs = settings.observability
    if metrics_port is None:
        server = MetricsServer(metrics, obs.metrics_host, obs.metrics_port).start() if obs.metrics_port else None
    else:
        server = MetricsServer(metrics, obs.metrics_host, metrics_port).start()
    if health_port is None and metrics_port is not None:
        health_port = 0
    try:
        if health_port is None:
            health = HealthServer(metrics, obs.metrics_host, obs.health_port).start() if obs.health_port else None
        else:
            health = HealthServer(metrics, obs.metrics_host, health_port).start()
    except OSError:
        if server is not None:
            server.close()
        raise
    consumer = make_consumer(settings.kafka, **(consumer_overrides or {}))
    producer_conf = producer_config(settings.kafka)
    producer = Producer(producer_conf)
    return Service(settings=settings, consumer=consumer, producer=producer, dedup=dedup, runners=runners,
                   metrics=metrics, decode_pool=pool, score_pool=score_pool, metrics_server=server, health_server=health,
                   owns_runners=owns_runners,
                   dead_letter_max_value_bytes=int(producer_conf["message.max.bytes"]) - DEAD_LETTER_HEADER_ROOM, framing=framing,
                   max_record_bytes=int(producer_conf["message.max.bytes"]) - RECORD_FRAMING_ROOM)
