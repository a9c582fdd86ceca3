"""The producer side of replay: pace, key, label and publish the messages of a source.

Each message is keyed by its object id (ZTF ``objectId``, Rubin ``diaObjectId``) so one
object stays on one partition. Its Kafka timestamp is the send time, so the service's latency
can be measured from it; the original observation time and the source file travel in headers:

* ``sc-source-file``: file path (``!member`` inside an archive, ``#i`` in a multi-record file);
* ``sc-observed-mjd`` and ``sc-observed-unix-ms``: the alert's observation time;
* ``sc-replay-index``: the message's position in the replay (what ``--skip`` counts);
* ``sc-multiply-copy`` and ``sc-original-alert-id``: with ``--multiply``, the copy index
  (0 = the original) and the id it was copied from.

At recorded cadence (``--speed``) messages go out in observation-time order, re-ordered within a
bounded read-ahead window (:mod:`stream.replay.ordering`). The archive's observation times are
read once first (:func:`_plan_cadence`): one line gives the whole archive's span and what the
replay will take with ``--max-gap`` applied (``replay_plan``; a warning,
``replay_spans_more_than_a_night``, when it spans more than a night and no ``--max-gap`` caps the
gaps), and the progress line shows when the next message is due and the ETA.

The producer is idempotent (``acks=all``); every delivery report is checked and the replay
fails with :class:`ReplayError` if any message failed or is left unflushed.
"""
from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import structlog

from stream.kafka_clients import produce_retrying
from stream.kafka_logs import with_client_logger
from stream.replay.ordering import DEFAULT_WINDOW, NIGHT_DAYS, TimeOrder
from stream.replay.pacing import SECONDS_PER_DAY, Pacer
from stream.replay.rewrite import MAX_COPIES, MultiplyError, multiply
from stream.replay.sources import SourceMessage, Unreadable, count_hint, iter_source

__all__ = ["ReplayError", "ReplayInterrupted", "Stopped", "ReplaySummary", "OutgoingMessage", "plan_messages", "replay",
           "headers_for", "MJD_UNIX_EPOCH"]

log = structlog.get_logger(__name__)

#: MJD of 1970-01-01T00:00:00.
MJD_UNIX_EPOCH = 40587.0


class ReplayError(RuntimeError):
    """Messages failed to be delivered or were left unflushed. ``summary`` says how far it got."""

    def __init__(self, message: str, summary: ReplaySummary) -> None:
        super().__init__(message)
        self.summary = summary


class Stopped(KeyboardInterrupt):
    """Raised by a signal handler (``replay`` installs one for SIGTERM) to stop a replay like Ctrl-C does."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name


class ReplayInterrupted(KeyboardInterrupt):
    """SIGINT (Ctrl-C) or SIGTERM stopped the replay; ``summary`` says what was sent and
    ``summary.resume_skip`` the ``--skip`` that resumes it without sending anything twice."""

    def __init__(self, signal_name: str, summary: ReplaySummary) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name
        self.summary = summary


@dataclass
class ReplaySummary:
    """What a replay did; printed as one JSON line at the end."""

    source: str
    topic: str
    sent: int = 0
    bytes: int = 0
    elapsed_s: float = 0.0
    skipped: dict[str, int] = field(default_factory=dict)
    unreadable: list[dict[str, str]] = field(default_factory=list)
    delivery_failures: int = 0
    unflushed: int = 0
    pacing: str = "asap"
    multiply: int = 1
    #: At recorded cadence: messages out of time order by more than the read-ahead window (sent at once).
    late: int = 0
    #: Observation-time span of the archive read, in days (cadence only).
    span_days: float = 0.0
    #: Seconds of idle gaps shortened by --max-gap.
    gaps_cut_s: float = 0.0
    #: "SIGINT" or "SIGTERM" when a signal stopped the replay, else None.
    interrupted: str | None = None
    #: Position in the replay's sequence to resume from (``--skip``): every message before it was
    #: delivered. Set when the replay stopped early (a signal, a failure).
    resume_skip: int | None = None

    @property
    def rate_per_s(self) -> float:
        return self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_json(self) -> str:
        data = asdict(self)
        data["elapsed_s"] = round(self.elapsed_s, 3)
        data["span_days"] = round(self.span_days, 4)
        data["gaps_cut_s"] = round(self.gaps_cut_s, 3)
        data["rate_per_s"] = round(self.rate_per_s, 1)
        return json.dumps(data, sort_keys=True)


@dataclass(frozen=True)
class OutgoingMessage:
    """One message ready to send: position in the replay, copy index and the source message."""

    index: int
    copy_index: int
    message: SourceMessage
    original_alert_id: int | None


def plan_messages(items: Iterable[SourceMessage | Unreadable], copies: int, summary: ReplaySummary) -> Iterator[OutgoingMessage]:
    """The replay's message sequence (originals and copies), recording unreadable entries in ``summary``."""
    index = 0
    reasons: Counter[str] = Counter()
    for item in items:
        if isinstance(item, Unreadable):
            summary.unreadable.append({"origin": item.origin, "reason": item.reason})
            reasons["unreadable"] += 1
            summary.skipped.update(reasons)
            log.warning("unreadable_replay_entry", origin=item.origin, reason=item.reason)
            continue
        try:
            for copy_index, message in multiply(item, copies):
                yield OutgoingMessage(index, copy_index, message, item.alert_id)
                index += 1
        except MultiplyError as exc:
            if copies > 1 and "only ZTF and Rubin" in str(exc):
                reasons["not_multipliable"] += copies - 1
                summary.skipped.update(reasons)
                log.warning("message_sent_once_not_multiplied", origin=item.origin, reason=str(exc))
                continue
            raise


def headers_for(out: OutgoingMessage, copies: int) -> list[tuple[str, bytes]]:
    """The ``sc-*`` headers of one replayed message."""
    message = out.message
    headers = [("sc-source-file", message.origin.encode()), ("sc-replay-index", str(out.index).encode())]
    if message.observed_mjd is not None:
        headers.append(("sc-observed-mjd", repr(message.observed_mjd).encode()))
        headers.append(("sc-observed-unix-ms", str(round((message.observed_mjd - MJD_UNIX_EPOCH) * 86_400_000)).encode()))
    if copies > 1:
        headers.append(("sc-multiply-copy", str(out.copy_index).encode()))
        if out.original_alert_id is not None:
            headers.append(("sc-original-alert-id", str(out.original_alert_id).encode()))
    return headers


def _producer(bootstrap_servers: str, client_config: Mapping[str, Any] | None):
    from confluent_kafka import Producer

    conf: dict[str, Any] = {"bootstrap.servers": bootstrap_servers, "linger.ms": 20}
    conf.update(client_config or {})
    # Idempotence and acks=all are not negotiable: a replay must neither drop nor duplicate.
    conf.update({"enable.idempotence": True, "acks": "all"})
    return Producer(with_client_logger(conf))


def replay(
    source: str | Path,
    topic: str,
    *,
    bootstrap_servers: str,
    client_config: Mapping[str, Any] | None = None,
    pacer: Pacer | None = None,
    copies: int = 1,
    skip: int = 0,
    limit: int | None = None,
    partitions: int = 4,
    create_topic: bool = True,
    progress: bool = True,
    flush_timeout_s: float = 120.0,
    reorder_window: int = DEFAULT_WINDOW,
) -> ReplaySummary:
    """Publish every message of ``source`` onto ``topic``; returns the summary.

    At recorded cadence the messages are re-ordered by observation time within ``reorder_window``
    messages of read-ahead. ``skip`` resumes a replay: the first ``skip`` messages of the sequence (the ``sent`` of
    an earlier summary) are not sent again. ``limit`` stops after that many sent messages.
    Raises :class:`ReplayError` when a delivery failed or messages were left unflushed, and
    :class:`ReplayInterrupted` (a ``KeyboardInterrupt``) on Ctrl-C or :class:`Stopped`, after
    delivering what was in flight (at most 10 s); both carry the summary with ``resume_skip``.
    """
    from confluent_kafka import KafkaError, KafkaException
    from tqdm import tqdm

    if not 1 <= copies <= MAX_COPIES + 1:
        raise MultiplyError(f"--multiply must be between 1 and {MAX_COPIES + 1}, got {copies}")
    pacer = pacer or Pacer()
    summary = ReplaySummary(source=str(source), topic=topic, pacing=pacer.mode, multiply=copies)
    if create_topic:
        from stream.stack import create_topics

        create_topics(bootstrap_servers, [topic], partitions=partitions, config=dict(client_config or {}))
    producer = _producer(bootstrap_servers, client_config)
    failures: list[str] = []
    #: Positions sent and not yet acknowledged, and those that failed: what --skip must not pass.
    pending: set[int] = set()
    failed: set[int] = set()

    def on_delivery_of(index: int) -> Any:
        def on_delivery(err: KafkaError | None, _msg: Any) -> None:
            pending.discard(index)
            if err is not None:
                failures.append(str(err))
                failed.add(index)
        return on_delivery

    hint = count_hint(source)
    try:
        plan = _plan_cadence(source, pacer, copies, skip, limit, hint, progress) if pacer.mode == "cadence" else None
    except KeyboardInterrupt as exc:  # stopped while reading the observation times: nothing sent yet
        summary.interrupted = exc.signal_name if isinstance(exc, Stopped) else "SIGINT"
        summary.resume_skip = skip
        raise ReplayInterrupted(summary.interrupted, summary) from None
    if plan is not None:
        hint = plan.messages
    total = None if hint is None else max(0, hint * copies - skip)
    if total is not None and limit is not None:
        total = min(total, limit)
    if plan is not None:
        summary.span_days = plan.span_days
        _announce_plan(plan, pacer, total)
    # At recorded cadence the rate-based ETA of tqdm means nothing (bursts, then waits): the plan's is shown instead.
    bar_format = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]" if plan is not None else None
    bar = tqdm(total=total, unit="msg", file=sys.stderr, disable=not progress, dynamic_ncols=True, desc=f"replay -> {topic}",
               bar_format=bar_format)
    started = time.monotonic()
    resumed = 0
    items: Iterable[SourceMessage | Unreadable] = iter_source(source)
    order = TimeOrder(items, reorder_window) if pacer.mode == "cadence" else None

    def eta() -> str:
        if plan is None:
            return ""
        return f", ETA {_duration(max(0.0, plan.takes_s - (time.monotonic() - started)))}"

    def show_next_due(delay_s: float) -> None:
        bar.set_postfix_str(f"next due in {_duration(delay_s)}{eta()}", refresh=True)
        if delay_s > 60 and not progress:
            log.info("replay_waiting", next_due_in_s=round(delay_s, 1), sent=summary.sent)

    next_index = skip  # the position after the last message handed to the producer
    interrupted: ReplayInterrupted | None = None
    try:
        for out in plan_messages(order if order is not None else items, copies, summary):
            if out.index < skip:
                resumed += 1
                continue
            if limit is not None and summary.sent >= limit:
                break
            pacer.wait(out.message.observed_mjd, before_sleep=show_next_due)
            bar.set_postfix_str(eta()[2:], refresh=False)
            key = out.message.object_id.encode() if out.message.object_id is not None else None
            try:
                produce_retrying(producer, topic, out.message.value, key=key, headers=headers_for(out, copies),
                                 timestamp=int(time.time() * 1000), on_delivery=on_delivery_of(out.index))
            except KafkaException as exc:
                raise ReplayError(f"produce to {topic} failed: {exc}", summary) from exc
            pending.add(out.index)
            next_index = out.index + 1
            producer.poll(0)
            summary.sent += 1
            summary.bytes += len(out.message.value)
            bar.update(1)
            if failures:
                break
        summary.unflushed = producer.flush(flush_timeout_s)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM through Stopped: deliver what is in hand, then say where to resume
        summary.interrupted = exc.signal_name if isinstance(exc, Stopped) else "SIGINT"
        bar.close()
        try:
            summary.unflushed = producer.flush(min(flush_timeout_s, _INTERRUPT_FLUSH_S))
        except KeyboardInterrupt:  # a second Ctrl-C: stop waiting, still report
            summary.unflushed = len(producer)
        summary.delivery_failures = len(failures)
        summary.resume_skip = min(pending | failed, default=next_index)
        interrupted = ReplayInterrupted(summary.interrupted, summary)
    finally:
        bar.close()
        summary.elapsed_s = time.monotonic() - started
        if order is not None:
            summary.late, summary.gaps_cut_s = order.late, pacer.gaps_cut_s
            summary.span_days = max(summary.span_days, order.span_days)
        if resumed:
            summary.skipped["resume"] = resumed
    if interrupted is not None:
        log.warning("replay_interrupted", signal=summary.interrupted, sent=summary.sent, resume_skip=summary.resume_skip)
        raise interrupted
    summary.delivery_failures = len(failures)
    if failures or summary.unflushed:
        summary.resume_skip = min(pending | failed, default=next_index)
        raise ReplayError(
            f"{len(failures)} message(s) failed delivery (first: {failures[0] if failures else '-'}), "
            f"{summary.unflushed} left unflushed after {flush_timeout_s:.0f} s", summary)
    log.info("replay_done", topic=topic, sent=summary.sent, bytes=summary.bytes, elapsed_s=round(summary.elapsed_s, 3),
             unreadable=len(summary.unreadable))
    return summary


#: Longest wait for in-flight deliveries after SIGINT/SIGTERM (what is left is reported, and not skipped on resume).
_INTERRUPT_FLUSH_S = 10.0


def _duration(seconds: float) -> str:
    """``42.0 s``, ``12.5 min``, ``8.6 h``, ``3.2 d``: how long until the next message is due."""
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 2 * SECONDS_PER_DAY:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / SECONDS_PER_DAY:.1f} d"


@dataclass(frozen=True)
class CadencePlan:
    """What a replay at recorded cadence will do, from one read of the archive's observation times."""

    #: Readable messages in the source (before --multiply, --skip and --limit).
    messages: int
    #: Observation-time span of the whole archive, in days.
    span_days: float
    #: Seconds the replay will take at this speed, with --max-gap's cap, --skip and --limit applied.
    takes_s: float


def _plan_cadence(source: str | Path, pacer: Pacer, copies: int, skip: int, limit: int | None, hint: int | None,
                  progress: bool) -> CadencePlan:
    """Read the archive's observation times once (decoding, as the replay will) to know its true span,
    count and duration before the first message goes out."""
    from tqdm import tqdm

    mjds: list[float] = []
    messages = 0
    with tqdm(total=hint, unit="msg", file=sys.stderr, disable=not progress, dynamic_ncols=True,
              desc="reading observation times", leave=False) as bar:
        for item in iter_source(source):
            if isinstance(item, SourceMessage):
                messages += 1
                if item.observed_mjd is not None:
                    mjds.append(item.observed_mjd)
            bar.update(1)
    mjds.sort()  # the replay sends in observation-time order
    span = mjds[-1] - mjds[0] if mjds else 0.0
    end = messages * copies if limit is None else min(messages * copies, skip + limit)
    # message i of the sequence is copy (i mod copies) of original i // copies: copies share a time
    sent = mjds[min(skip // copies, len(mjds)):(end + copies - 1) // copies]
    return CadencePlan(messages=messages, span_days=span, takes_s=pacer.estimate_s(sent))


def _announce_plan(plan: CadencePlan, pacer: Pacer, total: int | None) -> None:
    """One line before the first message: the archive's span and what the replay will take. A warning
    when it spans more than a night and no --max-gap caps the idle gaps (then the wait is real)."""
    fields = {"messages": total, "span_days": round(plan.span_days, 3), "speed": pacer.speed, "max_gap_s": pacer.max_gap_s,
              "replay_takes": _duration(plan.takes_s), "replay_takes_s": round(plan.takes_s, 3)}
    if plan.span_days > NIGHT_DAYS and pacer.max_gap_s is None:
        log.warning("replay_spans_more_than_a_night", **fields, hint="pass --max-gap S to cap idle gaps at S seconds")
    else:
        log.info("replay_plan", **fields)
