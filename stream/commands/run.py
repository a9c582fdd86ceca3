"""``survey-classifier run``: start one consumer-group member of the classifier service.

Before the service starts, the broker and Redis are asked once (one clear line each); then a
watch keeps asking (see :mod:`stream.health`): gauges ``sc_kafka_up`` / ``sc_redis_up``,
readiness false while either is down, one warning per ``kafka.unreachable_warn_interval_s``,
and exit status 2 after ``kafka.exit_after_unreachable_s`` without a broker when that is set.
Mistakes a person can fix (no broker named, the metrics or health port taken, an output topic missing
without ``--create-topics``) end with one line, status 2. With ``KAFKA_BOOTSTRAP_SERVERS`` /
``REDIS_URL`` unset (and not in the config), the services of a ``stack up`` running in the same
directory are used (its ``var/stack.env``).
"""
from __future__ import annotations

import argparse
import dataclasses
import errno
import os
import socket

import structlog

from stream.errors import ServiceUnreachable, UsageError
from stream.stack import EMBEDDED_PARTITIONS

__all__ = ["register"]

log = structlog.get_logger(__name__)

_EPILOG = """\
examples:
  survey-classifier run --embedded --allow-untrained --max-idle 10
      embedded broker + Redis, untrained models allowed, stop after 10 s without input
  KAFKA_BOOTSTRAP_SERVERS=kafka:9092 REDIS_URL=redis://redis:6379/0 survey-classifier run --config deploy/config/production.toml
  SC__KAFKA__EXIT_AFTER_UNREACHABLE_S=60 survey-classifier run --config c.toml
      exit with status 2 once the broker has been unreachable for 60 s (for CI and supervisors)
  SC__OBSERVABILITY__METRICS_PORT=9118 SC__OBSERVABILITY__HEALTH_PORT=9119 survey-classifier run --config c.toml
      a second member on the same host: other metrics and health ports (0 disables a listener)

exit status: 0 stopped with every count reconciled, 1 counts not reconciled,
2 a mistake to fix (configuration, environment, port in use, broker unreachable for too long).
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="consume, classify and publish (the service)",
                       description="Run the classifier service: settings from --config (TOML) and the environment "
                                   "(KAFKA_BOOTSTRAP_SERVERS, REDIS_URL, SC__SECTION__KEY; see stream/README.md).",
                       epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="TOML settings file (default: built-in defaults plus the environment)")
    p.add_argument("--embedded", action="store_true",
                   help="start the embedded broker + Redis (memory only) instead of the configured services")
    p.add_argument("--allow-untrained", action="store_true",
                   help="run models whose card says untrained (every record then says so)")
    p.add_argument("--max-idle", type=float, default=None, metavar="SECONDS",
                   help="stop after this long with no input (default: run until SIGTERM/SIGINT)")
    p.add_argument("--create-topics", action="store_true",
                   help="create the input, output and dead-letter topics if missing (without it a missing output or "
                        "dead-letter topic is refused at start)")
    p.add_argument("--partitions", type=int, default=EMBEDDED_PARTITIONS, help="partitions for --create-topics")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from stream.config import load_settings
    from stream.health import ServiceWatch, startup_check
    from stream.kafka_clients import consumer_config
    from stream.logs import configure_logging
    from stream.service import build_service
    from stream.stack import EMBEDDED_ASSIGNMENT_STRATEGY, EmbeddedStack, create_topics, with_stack_file

    settings = load_settings(args.config)
    if args.log_format is None or args.log_level is None:
        configure_logging(args.log_format or settings.observability.log_format, args.log_level or settings.observability.log_level)
    if args.allow_untrained:
        settings = dataclasses.replace(settings, engine=dataclasses.replace(settings.engine, allow_untrained=True))
    if not args.embedded:
        settings = with_stack_file(settings)
        _require_services(settings, args.config)
    _check_listener_ports(settings.observability)
    _check_models(settings, args.config)
    stack = None
    if args.embedded:
        stack = EmbeddedStack().start()
        settings = settings.with_services(stack.bootstrap_servers, stack.redis_url)
        # Tansu's cooperative-sticky rebalancing is broken: use an eager assignor there.
        settings = dataclasses.replace(settings, kafka=dataclasses.replace(settings.kafka, assignment_strategy=EMBEDDED_ASSIGNMENT_STRATEGY))
        print(f"embedded stack: KAFKA_BOOTSTRAP_SERVERS={stack.bootstrap_servers} REDIS_URL={stack.redis_url}", flush=True)
    try:
        k = settings.kafka
        client_conf = consumer_config(k)
        report = startup_check(client_conf, settings.redis.url, timeout_s=min(5.0, k.unreachable_warn_interval_s))
        if args.create_topics or args.embedded:
            if report.kafka_error is not None:
                raise ServiceUnreachable(f"--create-topics: Kafka at {k.bootstrap_servers} did not answer: {report.kafka_error} "
                                         f"(check KAFKA_BOOTSTRAP_SERVERS / kafka.bootstrap_servers)")
            create_topics(k.bootstrap_servers, k.all_topics(), partitions=args.partitions, config=dict(k.client))
        elif report.kafka_error is None:
            _require_output_topics(settings, args.config)
        service = _build(build_service, settings)
        watch = ServiceWatch(client_conf, settings.redis.url, service.metrics, warn_interval_s=k.unreachable_warn_interval_s,
                             exit_after_s=k.exit_after_unreachable_s, on_give_up=service.request_stop,
                             probe_interval_s=k.health_probe_interval_s)
        watch.seed(report)
        service.install_signal_handlers()
        watch.start()
        try:
            metrics = service.run(max_idle_s=args.max_idle)
        finally:
            watch.stop()
        if watch.gave_up:
            raise ServiceUnreachable(watch.give_up_reason)
        totals = metrics.totals()
        return 0 if totals.balanced else 1
    finally:
        if stack is not None:
            stack.stop()


_STACK_HINT = ("or run `survey-classifier stack up` in this directory (it writes var/stack.env, read when the variables "
               "are unset), or pass --embedded for a private stack that replay and subscribe cannot see")


def _require_services(settings, config_path: str | None) -> None:
    """Refuse to start without a broker or Redis named, saying where to name them."""
    where = f" or in {config_path}" if config_path else ""
    if not settings.kafka.bootstrap_servers:
        raise UsageError(f"no Kafka broker named: set KAFKA_BOOTSTRAP_SERVERS (or kafka.bootstrap_servers{where}), {_STACK_HINT}")
    if not settings.redis.url:
        raise UsageError(f"no Redis named: set REDIS_URL (or redis.url{where}), {_STACK_HINT}")


def _require_output_topics(settings, config_path: str | None) -> None:
    """Refuse to start when a topic the service writes is missing: producing to it would create it
    with the broker's defaults (4 partitions on Tansu), or fail on a cluster without auto-creation."""
    from stream.offsets import OffsetsError, topic_partitions

    k = settings.kafka
    outputs = {"kafka.output_topic": k.output_topic, "kafka.dead_letter_topic": k.dead_letter_topic}
    if k.exposure_topics:
        outputs["kafka.exposure_output_topic"] = k.exposure_output_topic
    try:
        layout = topic_partitions(k.bootstrap_servers, set(outputs.values()), dict(k.client))
    except OffsetsError:
        return  # the broker stopped answering: the watch reports it
    missing = [f"{topic} ({key})" for key, topic in outputs.items() if not layout[topic]]
    if missing:
        where = f" in {config_path}" if config_path else ""
        raise UsageError(f"output topic(s) missing on {k.bootstrap_servers}: {', '.join(missing)}; create them, pass "
                         f"--create-topics, or name existing ones{where}")


def _models_source(config_path: str | None) -> str:
    """Where engine.models came from, for an error message: the variable if set, else the file."""
    if os.environ.get("SC__ENGINE__MODELS") is not None:
        return "SC__ENGINE__MODELS"
    return f"engine.models in {config_path}" if config_path else "engine.models"


def _check_models(settings, config_path: str | None = None) -> None:
    """Refuse unknown names in engine.models (``name`` or ``name@version``), and untrained models
    without the flag, before anything starts."""
    from engines.contract import EngineError
    from engines.registry import load_registry
    from schemas.alert import InputKind
    from stream.errors import did_you_mean

    registry = load_registry()
    eng = settings.engine
    for ref in eng.models:
        name = ref.split("@", 1)[0]
        if name not in registry.cards:
            raise UsageError(f"{_models_source(config_path)}: no model named {name!r}{did_you_mean(name, registry.cards)} "
                             f"(known: {', '.join(sorted(registry.cards))})")
        try:
            registry.card(ref)
        except EngineError as exc:
            raise UsageError(f"{_models_source(config_path)}: {exc}") from None
    if eng.allow_untrained:
        return
    kinds = ([InputKind.DIFFERENCE_ALERT] if settings.kafka.alert_topics else []) + (
        [InputKind.RAW_EXPOSURE, InputKind.MULTIBAND_CUTOUT] if settings.kafka.exposure_topics else [])
    untrained = sorted({f"{card.name}@{card.version}" for kind in kinds for card in registry.selected(kind, list(eng.models))
                        if not card.trained})
    if untrained:
        raise UsageError(f"model(s) {', '.join(untrained)} have untrained placeholder weights: pass --allow-untrained "
                         f"(or engine.allow_untrained = true, SC__ENGINE__ALLOW_UNTRAINED) to run them anyway, or leave "
                         f"them out of engine.models")


#: The two listeners: setting name, and what 0 does.
_LISTENERS = {"metrics_port": "disable the endpoint",
              "health_port": "serve /healthz and /readyz on the metrics port instead"}


def _port_in_use_error(host: str, port: int, setting: str = "metrics_port") -> UsageError:
    what = setting.removesuffix("_port")
    return UsageError(f"{what} port {host}:{port} is already in use (another member on this host?): set "
                      f"observability.{setting} (SC__OBSERVABILITY__{setting.upper()}) to a free port, or 0 to "
                      f"{_LISTENERS[setting]}")


def _port_taken(host: str, port: int) -> bool:
    """True when ``host:port`` cannot be bound because something holds it (binding is the only honest test)."""
    probe = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind((host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return True
        raise
    finally:
        probe.close()
    return False


def _check_listener_ports(obs) -> None:
    """Fail before the models load when the metrics or the health port is taken."""
    for setting in _LISTENERS:
        port = getattr(obs, setting)
        if port and _port_taken(obs.metrics_host, port):
            raise _port_in_use_error(obs.metrics_host, port, setting)


def _build(build_service, settings):
    """The service, with a listener port in use reported as the setting to change; logs the endpoint URLs."""
    obs = settings.observability
    try:
        service = build_service(settings)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            # taken between the check and the bind: name the one still taken (the other was closed)
            setting = next((s for s in _LISTENERS if getattr(obs, s) and _port_taken(obs.metrics_host, getattr(obs, s))),
                           "metrics_port")
            raise _port_in_use_error(obs.metrics_host, getattr(obs, setting), setting) from exc
        raise
    if service.metrics_server is not None:
        base = f"http://{obs.metrics_host}:{service.metrics_server.port}"
        log.info("metrics_endpoint", metrics=f"{base}/metrics", stats=f"{base}/stats")
    else:
        log.info("metrics_endpoint_disabled", setting="observability.metrics_port = 0")
    probes = service.health_server or service.metrics_server
    if probes is not None:
        base = f"http://{obs.metrics_host}:{probes.port}"
        log.info("health_endpoint", healthz=f"{base}/healthz", readyz=f"{base}/readyz",
                 listener="health_port" if service.health_server is not None else "metrics_port")
    return service
