"""librdkafka's own log lines, routed through structlog and rate limited.

Without this, a client pointed at a broker that does not answer writes raw text lines on stderr
(tens per second, no backoff, not JSON). Every client we build is handed :func:`client_logger`
as its ``logger`` property: confluent-kafka then forwards librdkafka's lines to it, and each
becomes one ``librdkafka_log`` event with the facility and client name as fields. At most one
line per facility per :data:`RATE_LIMIT_S` seconds is written; the next one says how many were
held back (``suppressed``), so nothing is hidden, only counted.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any

import structlog

__all__ = ["client_logger", "RateLimitedHandler", "RATE_LIMIT_S", "with_client_logger"]

#: One line per librdkafka facility per this many seconds.
RATE_LIMIT_S = 30.0

_LOGGER_NAME = "survey_classifier.librdkafka"
_log = structlog.get_logger("librdkafka")


class RateLimitedHandler(logging.Handler):
    """Writes librdkafka records as structlog events, one per facility per ``interval_s``."""

    def __init__(self, interval_s: float = RATE_LIMIT_S) -> None:
        super().__init__(level=logging.DEBUG)
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}
        self._mutex = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        facility, client, text = (list(args) + ["", "", ""])[:3] if len(args) >= 3 else ("", "", record.getMessage())
        key = str(facility)
        now = time.monotonic()
        with self._mutex:
            last = self._last.get(key)
            if last is not None and now - last < self.interval_s:
                self._held[key] = self._held.get(key, 0) + 1
                return
            self._last[key] = now
            suppressed = self._held.pop(key, 0)
        fields: dict[str, Any] = {"facility": key, "client": str(client), "detail": str(text).strip()}
        if suppressed:
            fields["suppressed"] = suppressed
            fields["per_s"] = self.interval_s
        if record.levelno >= logging.ERROR:
            _log.error("librdkafka_log", **fields)
        elif record.levelno >= logging.WARNING:
            _log.warning("librdkafka_log", **fields)
        else:
            _log.info("librdkafka_log", **fields)


_lock = threading.Lock()


def client_logger() -> logging.Logger:
    """The process's one logger for librdkafka (built once; never propagates to the root logger)."""
    logger = logging.getLogger(_LOGGER_NAME)
    with _lock:
        if not logger.handlers:
            logger.addHandler(RateLimitedHandler())
            logger.setLevel(logging.INFO)
            logger.propagate = False
    return logger


def with_client_logger(conf: dict[str, Any]) -> dict[str, Any]:
    """``conf`` (a fresh dict the caller owns) with our ``logger`` unless it names one already."""
    conf.setdefault("logger", client_logger())
    return conf
