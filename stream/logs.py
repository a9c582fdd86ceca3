"""structlog set-up: JSON lines in production, readable lines on a terminal."""
from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO, cast

import structlog

__all__ = ["configure_logging", "redact_credentials"]


def redact_credentials(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: no ``scheme://user:password@`` in any string of a log line (an
    exception text or a setting can carry a URL with its password)."""
    from stream.schema_registry import redact_urls_in

    for key, value in event.items():
        if isinstance(value, str) and "@" in value:
            event[key] = redact_urls_in(value)
    return event


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at write time (pytest and daemons swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(fmt: str = "auto", level: str = "info", file: TextIO | None = None) -> None:
    """Configure structlog once per process. ``fmt``: ``auto``, ``json`` or ``console``.

    ``file``: write log lines there instead of stderr (the demo keeps its terminal for the
    human summary and names the log file).
    """
    if fmt == "auto":
        fmt = "console" if file is None and sys.stderr.isatty() else "json"
    colors = file is None and sys.stderr.isatty()
    renderer = structlog.dev.ConsoleRenderer(colors=colors) if fmt == "console" else structlog.processors.JSONRenderer()
    lvl = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_credentials,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=file if file is not None else cast(TextIO, _CurrentStderr())),
        cache_logger_on_first_use=False,
    )
