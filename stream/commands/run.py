"""``survey-classifier run``: start one consumer-group member of the classifier service."""
from __future__ import annotations

import argparse
import dataclasses

import structlog

from stream.stack import EMBEDDED_PARTITIONS

__all__ = ["register"]

log = structlog.get_logger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="consume, classify and publish (the service)",
                       description="Run the classifier service: settings from --config (TOML) and the environment "
                                   "(KAFKA_BOOTSTRAP_SERVERS, REDIS_URL, SC__SECTION__KEY; see README).")
    p.add_argument("--config", help="TOML settings file")
    p.add_argument("--embedded", action="store_true",
                   help="start the embedded broker + Redis (memory only) instead of the configured services")
    p.add_argument("--allow-untrained", action="store_true",
                   help="run models whose card says untrained (every record then says so)")
    p.add_argument("--max-idle", type=float, default=None, metavar="SECONDS",
                   help="stop after this long with no input (default: run until SIGTERM/SIGINT)")
    p.add_argument("--create-topics", action="store_true",
                   help="create the input, output and dead-letter topics if missing")
    p.add_argument("--partitions", type=int, default=EMBEDDED_PARTITIONS, help="partitions for --create-topics")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from stream.config import load_settings  # noqa: PLC0415
    from stream.logs import configure_logging  # noqa: PLC0415
    from stream.service import build_service  # noqa: PLC0415
    from stream.stack import EMBEDDED_ASSIGNMENT_STRATEGY, EmbeddedStack, create_topics  # noqa: PLC0415

    settings = load_settings(args.config)
    if args.log_format is None or args.log_level is None:
        configure_logging(args.log_format or settings.observability.log_format, args.log_level or settings.observability.log_level)
    if args.allow_untrained:
        settings = dataclasses.replace(settings, engine=dataclasses.replace(settings.engine, allow_untrained=True))
    stack = None
    if args.embedded:
        stack = EmbeddedStack().start()
        settings = settings.with_services(stack.bootstrap_servers, stack.redis_url)
        # Tansu's cooperative-sticky rebalancing is broken: use an eager assignor there.
        settings = dataclasses.replace(settings, kafka=dataclasses.replace(settings.kafka, assignment_strategy=EMBEDDED_ASSIGNMENT_STRATEGY))
        print(f"embedded stack: KAFKA_BOOTSTRAP_SERVERS={stack.bootstrap_servers} REDIS_URL={stack.redis_url}", flush=True)
    try:
        k = settings.kafka
        if args.create_topics or args.embedded:
            create_topics(k.bootstrap_servers, k.all_topics(), partitions=args.partitions, config=dict(k.client))
        service = build_service(settings)
        service.install_signal_handlers()
        metrics = service.run(max_idle_s=args.max_idle)
        totals = metrics.totals()
        return 0 if totals.balanced else 1
    finally:
        if stack is not None:
            stack.stop()
