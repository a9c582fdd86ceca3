"""Are the broker and Redis there? A startup check, then a watch that keeps asking.

* :func:`probe_broker` asks for cluster metadata within a bounded time (the same request every
  client makes first), :func:`probe_redis` sends ``PING``; each returns ``None`` or the reason.
* :func:`startup_check` runs both once and logs one clear line each (``kafka_reachable`` /
  ``kafka_unreachable``, ``redis_reachable`` / ``redis_unreachable``) naming the setting to fix.
* :class:`ServiceWatch` keeps probing in a daemon thread, every ``probe_interval_s`` while both
  answer (how soon an outage shows), with backoff while a service is down
  (``initial_retry_s`` doubling up to ``probe_interval_s`` or ``warn_interval_s``, the smaller), sets the ``sc_kafka_up`` and
  ``sc_redis_up`` gauges (readiness is false while either is 0; liveness stays true as long as
  the main loop turns, which it does), writes one warning per ``warn_interval_s`` while a
  service is down and one line when it is back, and, with ``exit_after_s`` > 0, gives up once
  the broker has been unreachable that long: it calls ``on_give_up`` (the service's stop) and
  the command exits with status 2, for CI and supervisors.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

__all__ = ["probe_broker", "probe_redis", "startup_check", "ServiceWatch", "HealthReport"]

log = structlog.get_logger(__name__)


def _silent_logger() -> logging.Logger:
    """A logger that drops librdkafka's lines: a probe's answer is its result, said once by the caller."""
    logger = logging.getLogger("survey_classifier.librdkafka.probe")
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
        logger.propagate = False
    return logger


def probe_broker(client_config: Mapping[str, Any], timeout_s: float = 5.0) -> str | None:
    """``None`` when the brokers answer a metadata request within ``timeout_s``, else the reason.

    The probe's own librdkafka lines (connection refused, ...) are dropped: the caller reports
    the result in one line.
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    conf = dict(client_config)
    conf["logger"] = _silent_logger()
    for key in ("group.id", "auto.offset.reset", "enable.auto.commit", "enable.auto.offset.store", "enable.idempotence",
                "acks", "partition.assignment.strategy", "session.timeout.ms", "max.poll.interval.ms"):
        conf.pop(key, None)
    try:
        admin = AdminClient(conf)
        meta = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        err = exc.args[0] if exc.args else exc
        return str(getattr(err, "str", lambda: err)())
    if not meta.brokers:
        return "metadata named no brokers"
    return None


def probe_redis(url: str, timeout_s: float = 2.0) -> str | None:
    """``None`` when Redis answers ``PING`` within ``timeout_s``, else the reason."""
    import redis

    if not url:
        return "no Redis named (REDIS_URL / redis.url is empty)"
    client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        client.ping()
        return None
    except (redis.exceptions.RedisError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        client.close()


@dataclass(frozen=True)
class HealthReport:
    """The result of one round of probes (``None``: reachable, else the reason)."""

    kafka_error: str | None
    redis_error: str | None


def _redis_shown(url: str) -> str:
    from stream.schema_registry import redact_url

    return redact_url(url)


def startup_check(client_config: Mapping[str, Any], redis_url: str | None, *, timeout_s: float = 5.0) -> HealthReport:
    """Probe the broker (and Redis, when a URL is given) once; one log line for each."""
    bootstrap = client_config.get("bootstrap.servers", "")
    kafka_error = probe_broker(client_config, timeout_s)
    if kafka_error is None:
        log.info("kafka_reachable", bootstrap_servers=bootstrap)
    else:
        log.warning("kafka_unreachable", bootstrap_servers=bootstrap, within_s=timeout_s, error=kafka_error,
                    fix="check KAFKA_BOOTSTRAP_SERVERS / kafka.bootstrap_servers and the broker; retrying")
    redis_error = None
    if redis_url is not None:
        redis_error = probe_redis(redis_url, min(timeout_s, 2.0))
        if redis_error is None:
            log.info("redis_reachable", redis_url=_redis_shown(redis_url))
        else:
            log.warning("redis_unreachable", redis_url=_redis_shown(redis_url), error=redis_error,
                        fix="check REDIS_URL / redis.url and the server; consuming waits for it")
    return HealthReport(kafka_error, redis_error)


class ServiceWatch:
    """Probes the broker and Redis in a daemon thread; sets gauges, warns, gives up when told to.

    ``metrics`` needs ``set_kafka_up(bool)`` and ``set_redis_up(bool)`` (see :mod:`stream.metrics`).
    """

    def __init__(self, client_config: Mapping[str, Any], redis_url: str | None, metrics: Any, *,
                 warn_interval_s: float = 30.0, exit_after_s: float = 0.0, initial_retry_s: float = 1.0,
                 probe_timeout_s: float = 5.0, on_give_up: Callable[[], None] | None = None,
                 clock: Callable[[], float] = time.monotonic, probe_interval_s: float = 5.0) -> None:
        self._conf = dict(client_config)
        self._redis_url = redis_url
        self._metrics = metrics
        self.warn_interval_s = warn_interval_s
        self.exit_after_s = exit_after_s
        self.initial_retry_s = initial_retry_s
        self.probe_timeout_s = probe_timeout_s
        #: seconds between probes while both services answer, and the most between probes while one is down
        self.probe_interval_s = probe_interval_s
        self._on_give_up = on_give_up
        self._clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="service-watch", daemon=True)
        self._down_since: dict[str, float | None] = {"kafka": None, "redis": None}
        self._last_warning: dict[str, float] = {}
        #: Set once the broker was unreachable for ``exit_after_s``: the command exits non-zero.
        self.gave_up = False
        self.give_up_reason = ""

    def start(self) -> ServiceWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=self.probe_timeout_s + 1)

    def record(self, name: str, error: str | None, where: str) -> None:
        """Account one probe result of ``name`` (``kafka`` or ``redis``): gauge, warning, recovery line."""
        now = self._clock()
        (self._metrics.set_kafka_up if name == "kafka" else self._metrics.set_redis_up)(error is None)
        since = self._down_since[name]
        if error is None:
            if since is not None:
                log.info(f"{name}_reachable_again", where=where, down_for_s=round(now - since, 1))
            self._down_since[name] = None
            return
        if since is None:
            self._down_since[name] = since = now
        last = self._last_warning.get(name)
        if last is None or now - last >= self.warn_interval_s:
            self._last_warning[name] = now
            fields: dict[str, Any] = {"where": where, "down_for_s": round(now - since, 1), "error": error,
                                      "next_warning_in_s": self.warn_interval_s}
            if name == "kafka" and self.exit_after_s > 0:
                fields["exit_in_s"] = round(max(0.0, self.exit_after_s - (now - since)), 1)
            log.warning(f"{name}_unreachable", **fields)
        if name == "kafka" and self.exit_after_s > 0 and now - since >= self.exit_after_s and not self.gave_up:
            self.gave_up = True
            self.give_up_reason = (f"Kafka at {where} unreachable for {now - since:.0f} s "
                                   f"(kafka.exit_after_unreachable_s = {self.exit_after_s:g}): {error}")
            log.error("kafka_unreachable_giving_up", where=where, down_for_s=round(now - since, 1))
            if self._on_give_up is not None:
                self._on_give_up()

    def seed(self, report: HealthReport) -> None:
        """Start from a startup check's result without repeating its log lines."""
        now = self._clock()
        for name, error in (("kafka", report.kafka_error), ("redis", report.redis_error)):
            if name == "redis" and self._redis_url is None:
                continue
            (self._metrics.set_kafka_up if name == "kafka" else self._metrics.set_redis_up)(error is None)
            if error is not None:
                self._down_since[name] = now
                self._last_warning[name] = now

    def check_once(self) -> HealthReport:
        """One round of probes, accounted."""
        bootstrap = str(self._conf.get("bootstrap.servers", ""))
        timeout = min(self.probe_timeout_s, self.warn_interval_s)
        since = self._down_since["kafka"]
        if self.exit_after_s > 0 and since is not None:  # never probe far past the moment to give up
            timeout = max(0.2, min(timeout, self.exit_after_s - (self._clock() - since)))
        kafka_error = probe_broker(self._conf, timeout)
        self.record("kafka", kafka_error, bootstrap)
        redis_error = None
        if self._redis_url is not None:
            redis_error = probe_redis(self._redis_url, min(timeout, 2.0))
            self.record("redis", redis_error, _redis_shown(self._redis_url))
        return HealthReport(kafka_error, redis_error)

    def _loop(self) -> None:
        delay = self.initial_retry_s
        while not self._stop.is_set() and not self.gave_up:
            report = self.check_once()
            if report.kafka_error is None and report.redis_error is None:
                delay = self.initial_retry_s
                wait = self.probe_interval_s
            else:
                wait = delay
                # never slower than while both answer: "back" shows as soon as "down" did
                delay = min(delay * 2, self.warn_interval_s, self.probe_interval_s)
            if self.exit_after_s > 0 and self._down_since["kafka"] is not None:
                left = self.exit_after_s - (self._clock() - self._down_since["kafka"])
                wait = max(0.05, min(wait, left))
            if self._stop.wait(wait):
                return
