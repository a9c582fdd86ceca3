"""One frozen settings object, read once from a TOML file plus environment variables.

Precedence (lowest first): built-in defaults, the TOML file, environment variables.
Environment variables:

* ``KAFKA_BOOTSTRAP_SERVERS`` and ``REDIS_URL`` name existing services (real Kafka in production);
  when unset the embedded stack is used by the commands that can start it.
* ``SC__<SECTION>__<KEY>`` overrides any key, e.g. ``SC__BATCH__MAX_SIZE=512``,
  ``SC__ENGINE__ALLOW_UNTRAINED=true``. Values are parsed by the key's declared type, so
  ``"false"`` is ``False`` (never ``bool("false")``).
* ``SC_KAFKA__<CLIENT_KEY>`` sets a librdkafka property, ``.`` written as ``_``, e.g.
  ``SC_KAFKA__SASL_PASSWORD``; ``KAFKA_CLIENT_PROPERTIES_FILE`` names a ``key=value`` file
  (for secrets mounted by Kubernetes). Secrets never appear in ``repr`` or logs.

Unknown keys, wrong types and missing topic names are refused at start-up with
:class:`ConfigError`, naming the key. Enumerations are typed (``Literal``, or a pattern for
``engine.device``), so a value outside them is refused by the same parser that reads the type,
with the choices and the closest one.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import re
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from engines.backends import ENGINE_CACHE_DIR, BackendName, usable_cores
from schemas.alert import SURVEYS
from schemas.decode.limits import DecodeSettings
from stream.errors import UsageError, did_you_mean
from stream.schema_registry import redact_url, redact_urls_in

__all__ = [
    "ConfigError",
    "KafkaSettings",
    "RedisSettings",
    "BatchSettings",
    "EngineSettings",
    "DecodeSettings",
    "ObservabilitySettings",
    "Settings",
    "load_settings",
    "redact",
    "shown_value",
]

#: Variables that name the services (12-factor style), each -> the setting it fills.
SERVICE_ENV_VARIABLES: dict[str, tuple[str, str]] = {
    "KAFKA_BOOTSTRAP_SERVERS": ("kafka", "bootstrap_servers"),
    "REDIS_URL": ("redis", "url"),
    "SCHEMA_REGISTRY_URL": ("kafka", "schema_registry_url"),
}
ENV_PREFIX = "SC__"
KAFKA_CLIENT_ENV_PREFIX = "SC_KAFKA__"
SECRET_MARKERS = ("password", "secret", "token", "sasl.oauthbearer.config", "key.pem", "private")


@dataclass(frozen=True)
class Matches:
    """``Annotated[str, Matches(...)]``: a string setting whose values follow a pattern."""

    pattern: str
    described: str

    def check(self, key: str, raw: str) -> str:
        if re.fullmatch(self.pattern, raw):
            return raw
        raise ConfigError(f"{key}: expected {self.described}, got {shown_value(key, raw)}")


OffsetReset = Literal["earliest", "latest"]
AssignmentStrategy = Literal["range", "roundrobin", "cooperative-sticky"]
SubjectStrategy = Literal["topic", "record"]
LogFormat = Literal["auto", "json", "console"]
LogLevel = Literal["debug", "info", "warning", "error", "critical"]
#: ``cpu``, ``cuda`` or ``cuda:N``
Device = Annotated[str, Matches(r"cpu|cuda(:[0-9]+)?", "cpu, cuda or cuda:N")]


class ConfigError(UsageError, ValueError):
    """The configuration is invalid; the message names the file or environment variable, the key
    and what was expected (with the closest known key for a typo)."""


def _frozen_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return types.MappingProxyType(dict(value or {}))


def redact(props: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of client properties with secret values replaced, safe to log."""
    return {
        k: ("***" if any(m in k.lower() for m in SECRET_MARKERS) else v) for k, v in props.items()
    }


def shown_value(key: str, raw: Any) -> str:
    """How a setting's value may appear in an error message: secrets as ``***``, URLs without
    their credentials, tables by type only (they hold client properties such as passwords)."""
    if any(m in key.lower() for m in SECRET_MARKERS) or key == "kafka.client":
        return "***"
    if isinstance(raw, Mapping):
        return f"a table of {len(raw)} key(s)"
    return redact_urls_in(repr(raw))


@dataclass(frozen=True)
class KafkaSettings:
    """Kafka connection, topics and consumer-group settings."""

    bootstrap_servers: str = ""
    group_id: str = "survey-classifier"
    #: Difference-image alert topics (ZTF Avro container files, Rubin Confluent wire format).
    alert_topics: tuple[str, ...] = ("alerts",)
    #: Raw exposure topics (our ``exposure`` schema).
    exposure_topics: tuple[str, ...] = ()
    output_topic: str = "classified"
    exposure_output_topic: str = "classified-exposures"
    dead_letter_topic: str = "classified-dead-letter"
    #: ``cooperative-sticky`` on real Kafka; the embedded Tansu broker needs an eager one (``range``).
    assignment_strategy: AssignmentStrategy = "cooperative-sticky"
    auto_offset_reset: OffsetReset = "earliest"
    session_timeout_ms: int = 45000
    #: Confluent-compatible schema registry for Rubin schema ids; empty: the ids shipped in
    #: ``lsst-alert-packet`` (id = major*100 + minor).
    schema_registry_url: str = ""
    #: Confluent-compatible registry where the service registers the classified schema it writes and
    #: frames records with the id it returns; empty: the fixed ids 100*major+minor (see stream/README.md).
    output_schema_registry_url: str = ""
    #: Subject naming: ``topic`` (``<topic>-value``, TopicNameStrategy) or ``record`` (RecordNameStrategy).
    output_subject_strategy: SubjectStrategy = "topic"
    #: ``run`` exits with status 2 once the broker has been unreachable this long; 0: keep retrying.
    exit_after_unreachable_s: float = 0.0
    #: While the broker or Redis is unreachable, one warning per this many seconds.
    unreachable_warn_interval_s: float = 30.0
    #: While both answer, the watch asks them again every this many seconds: how soon ``sc_kafka_up``
    #: and ``/readyz`` notice an outage (at most this plus the 5 s probe timeout); while one is down
    #: its probes back off to this too, so its return shows as fast. (It was
    #: ``unreachable_warn_interval_s``, 30 s: a 20 s broker outage could pass unreported; the chaos
    #: suite, benchmarks/README.md.)
    health_probe_interval_s: float = 5.0
    #: Extra librdkafka properties passed through unchanged (security.protocol, sasl.*, ssl.*...).
    client: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "client", _frozen_mapping(self.client))

    def __repr__(self) -> str:  # secrets never printed
        def shown(name: str) -> str:
            value = getattr(self, name)
            if name == "client":
                return repr(redact(value))
            if name.endswith("_url"):  # every URL-bearing setting (input and output registries)
                return repr(redact_url(value))
            return repr(value)

        fields = ", ".join(f"{f.name}={shown(f.name)}" for f in dataclasses.fields(self))
        return f"KafkaSettings({fields})"

    def common_config(self) -> dict[str, Any]:
        """A fresh dict of the client properties every client shares (copied, never edited)."""
        conf = {"bootstrap.servers": self.bootstrap_servers}
        conf.update(self.client)
        return conf

    def all_topics(self) -> list[str]:
        """Every topic the service reads or writes: inputs, outputs, dead letters (no repeats)."""
        topics = [*self.alert_topics, *self.exposure_topics, self.output_topic, self.exposure_output_topic,
                  self.dead_letter_topic]
        return [t for t in dict.fromkeys(topics) if t]


@dataclass(frozen=True)
class RedisSettings:
    url: str = ""
    key_prefix: str = "survey-classifier:published:"
    #: Longer than any replay window: a replay of an older night is caught as duplicates.
    dedup_ttl_s: int = 30 * 24 * 3600
    #: With ``false`` (default) the service stops consuming while Redis is unreachable.
    publish_without_dedup: bool = False
    retry_initial_s: float = 0.5
    retry_max_s: float = 30.0

    def __repr__(self) -> str:  # the URL's password never printed
        fields = ", ".join(f"{f.name}={redact_url(self.url) if f.name == 'url' else getattr(self, f.name)!r}"
                           for f in dataclasses.fields(self))
        return f"RedisSettings({fields})"


#: Alerts per engine call on the CPU when ``engine.infer_batch`` is 0. Measured on the 2-core
#: Intel Xeon with ONNX Runtime on one thread, CPU ms per alert at batch 1 / 8 / 32: ACAI
#: 0.80 / 0.80 / 0.91, realbogus 0.80 / 0.63 / 0.64, rubin_realbogus 0.80 / 0.66 / 0.68, braai
#: 0.32 / 0.28 / 0.29; the service drained 3-4% more alerts per CPU second at 8 than at 32
#: (four interleaved 10,000-alert drains). Small chunks also spread over the score threads evenly.
CPU_INFER_BATCH = 8

#: ``batch.decode_workers = "auto"`` never starts more decode workers than this (each holds a
#: Python interpreter and the decoders: ~100 MiB).
AUTO_DECODE_WORKERS_MAX = 8


@dataclass(frozen=True)
class BatchSettings:
    max_size: int = 256
    max_wait_ms: int = 50
    #: Upper bound on batches consumed but not yet committed (bounds memory: ~30 MB per batch of
    #: ZTF alerts). 3 keeps the decode workers a batch ahead while one is scored (2 left them
    #: idle half the time: see benchmarks/README.md).
    max_in_flight: int = 3
    #: Worker processes for decode: ``"auto"`` (one per usable core, ``os.sched_getaffinity``,
    #: at most :data:`AUTO_DECODE_WORKERS_MAX`), a number, or 0 to decode in the consuming
    #: thread (no watchdog). Each batch is split across the workers.
    decode_workers: int | Literal["auto"] = "auto"
    #: How much lower the decode workers' CPU priority is than the consuming process's
    #: (``os.nice``, 0..19). The consuming thread scores, publishes and commits every batch
    #: one after another, so it bounds throughput; decode work splits over the workers and
    #: has slack. With one worker per core they compete with it as equals and take two
    #: thirds of the cores; a lower priority lets them fill the gaps it leaves instead.
    #: Measured on a 2-core machine: +4 to +6 % alerts/s at 10 (see benchmarks/README.md).
    #: 0 keeps equal priority (e.g. on a shared host where other work must not starve decode).
    decode_worker_nice: int = 10

    def decode_worker_count(self, cores: int | None = None) -> int:
        """The number of decode worker processes: ``decode_workers``, with ``"auto"`` resolved
        against ``cores`` (default: the cores this process may run on)."""
        if self.decode_workers == "auto":
            return max(1, min(AUTO_DECODE_WORKERS_MAX, cores if cores is not None else usable_cores()))
        return int(self.decode_workers)


@dataclass(frozen=True)
class EngineSettings:
    #: One of :data:`engines.backends.BACKENDS`: ``onnxruntime``, ``openvino``, ``torch`` or ``tensorrt``.
    backend: BackendName = "onnxruntime"
    #: ``cpu`` or ``cuda`` (``cuda:N``) for preprocessing and the torch backend.
    device: Device = "cpu"
    #: Where built ONNX files and TensorRT engines are cached.
    cache_dir: str = ENGINE_CACHE_DIR
    #: Refuse models whose card says ``untrained`` unless this is true.
    allow_untrained: bool = False
    #: Model names to run; empty runs every registered model that applies to an input kind.
    models: tuple[str, ...] = ()
    #: Per-model backend overrides, e.g. ``{acai = "openvino"}``; a model not named runs on ``backend``.
    #: From the environment: ``SC__ENGINE__BACKENDS="acai=openvino,braai=onnxruntime"``.
    backends: Mapping[str, BackendName] = field(default_factory=dict)
    #: CPU threads of each engine (ONNX Runtime intra-op, OpenVINO inference threads); 0: the
    #: cores this process may run on (``os.sched_getaffinity``, so a container's CPU set, not the
    #: host's count) divided among the ``score_threads``, at least 1.
    threads: int = 0
    #: Threads that preprocess and infer a batch's chunks (every model's) at once; engines release
    #: the GIL, so each keeps a core busy. 0: the usable cores on the CPU (each engine then on
    #: one thread: a one-thread engine does more per core than a two-thread one at batch 32, and
    #: one thread per model left a core idle while a single-threaded stage ran), 1 on CUDA.
    score_threads: int = 0
    #: torch CPU threads for preprocessing (and the torch backend). 1 by default: the batch
    #: operations are small and memory-bound, and OpenMP's synchronisation costs more than a
    #: second thread gains when the cores are shared with decode workers (measured on a loaded
    #: 2-core machine: 0.10 ms per alert with 1 thread, 0.61 ms with 2). 0: the usable cores.
    preprocess_threads: int = 1
    #: Alerts per engine call (and per preprocessing chunk), capped by each model's max batch.
    #: 0: 32 on the CPU, where small batches stay in the caches (ACAI measured here at ~0.5 ms
    #: per alert in chunks of 16 and 1.0-1.8 ms in chunks of 256, one thread), the model's max
    #: batch on CUDA, where big batches fill the device.
    infer_batch: int = 0
    #: Run a model on a survey its card does not name (it was never checked there), as
    #: ``"model:survey"`` pairs, e.g. ``["realbogus:rubin"]``; from the environment
    #: ``SC__ENGINE__RUN_UNVALIDATED="realbogus:rubin"``. Such scores are published in ``models``
    #: with ``validated = false``, never in ``real_bogus`` or ``class_scores``, and logged at
    #: start-up. Empty (the default): each model scores only the surveys it was checked on.
    run_unvalidated: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "backends", _frozen_mapping(self.backends))

    def unvalidated_surveys(self) -> dict[str, tuple[str, ...]]:
        """``run_unvalidated`` as model name -> surveys."""
        out: dict[str, tuple[str, ...]] = {}
        for pair in self.run_unvalidated:
            model, _, survey = pair.partition(":")
            out[model.strip()] = out.get(model.strip(), ()) + (survey.strip(),)
        return out

    def backend_for(self, model: str) -> str:
        """The backend ``model`` runs on: its override in ``backends``, else ``backend``."""
        return str(self.backends.get(model, self.backend))

    def infer_batch_size(self) -> int:
        """``infer_batch`` with 0 resolved: :data:`CPU_INFER_BATCH` (8) on the CPU, no cap (0) on CUDA."""
        if self.infer_batch > 0:
            return self.infer_batch
        return 0 if self.device.startswith("cuda") else CPU_INFER_BATCH

    def score_thread_count(self) -> int:
        """``score_threads``, with 0 resolved: the usable cores on the CPU, 1 on CUDA."""
        if self.score_threads > 0:
            return self.score_threads
        return 1 if self.device.startswith("cuda") else usable_cores()

    def thread_count(self) -> int:
        """``threads``, with 0 resolved to the usable cores shared among the score threads (at least 1)."""
        return self.threads if self.threads > 0 else max(1, usable_cores() // self.score_thread_count())


@dataclass(frozen=True)
class ObservabilitySettings:
    #: Port of ``/metrics``, ``/stats`` (and ``/healthz``, ``/readyz`` too); 0 disables it.
    metrics_port: int = 9108
    #: Port of ``/healthz`` and ``/readyz`` alone, for the liveness and readiness probes: its own
    #: listener, pool and deadline, so nothing done to the metrics port starves them (#23); 0: no
    #: separate listener (the probes then use the metrics port, as before).
    health_port: int = 9109
    #: Address both listeners bind (``0.0.0.0`` in a container).
    metrics_host: str = "127.0.0.1"
    #: ``json`` (production) or ``console``; ``auto`` picks console on a terminal.
    log_format: LogFormat = "auto"
    log_level: LogLevel = "info"


@dataclass(frozen=True)
class Settings:
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    batch: BatchSettings = field(default_factory=BatchSettings)
    engine: EngineSettings = field(default_factory=EngineSettings)
    decode: DecodeSettings = field(default_factory=DecodeSettings)
    observability: ObservabilitySettings = field(default_factory=ObservabilitySettings)

    def validate(self) -> Settings:
        """Rules across keys and ranges, one section at a time (types and choices were checked when
        the values were read); raises :class:`ConfigError` naming the key."""
        self._validate_kafka()
        self._validate_engine()
        self._validate_batch()
        self._validate_observability()
        return self

    def _validate_observability(self) -> None:
        o = self.observability
        for name in ("metrics_port", "health_port"):
            if not 0 <= getattr(o, name) <= 65535:
                raise ConfigError(f"observability.{name} must be a port number (0-65535), not {getattr(o, name)}")
        if o.health_port and o.health_port == o.metrics_port:
            raise ConfigError(f"observability.health_port and observability.metrics_port are both {o.metrics_port}: give the "
                              f"health listener its own port, or set health_port = 0 to serve the probes on the metrics port")

    def _validate_kafka(self) -> None:
        k = self.kafka
        if not k.alert_topics and not k.exposure_topics:
            raise ConfigError("kafka.alert_topics and kafka.exposure_topics are both empty: name at least one input topic")
        for name in ("output_topic", "dead_letter_topic", "group_id"):
            if not getattr(k, name):
                raise ConfigError(f"kafka.{name} is missing")
        if k.exposure_topics and not k.exposure_output_topic:
            raise ConfigError("kafka.exposure_output_topic is missing")
        if k.exit_after_unreachable_s < 0 or k.unreachable_warn_interval_s <= 0 or k.health_probe_interval_s <= 0:
            raise ConfigError("kafka.exit_after_unreachable_s must be >= 0, kafka.unreachable_warn_interval_s and "
                              "kafka.health_probe_interval_s > 0")

    def _validate_engine(self) -> None:
        for pair in self.engine.run_unvalidated:
            model, _, survey = pair.partition(":")
            if not model.strip() or survey.strip() not in SURVEYS:
                raise ConfigError(f"engine.run_unvalidated entries are \"model:survey\" with survey one of {', '.join(SURVEYS)}, "
                                  f"got {pair!r}")
        for name in ("threads", "preprocess_threads", "infer_batch", "score_threads"):
            if getattr(self.engine, name) < 0:
                raise ConfigError(f"engine.{name} must be >= 0 (0: the usable cores), got {getattr(self.engine, name)}")

    def _validate_batch(self) -> None:
        b = self.batch
        if not (b.decode_workers == "auto" or (isinstance(b.decode_workers, int) and b.decode_workers >= 0)):
            raise ConfigError(f"batch.decode_workers must be \"auto\" or a number >= 0, got {b.decode_workers!r}")
        if not 0 <= b.decode_worker_nice <= 19:
            raise ConfigError(f"batch.decode_worker_nice must be 0..19, got {b.decode_worker_nice}")
        if b.max_size < 1 or b.max_wait_ms < 0 or b.max_in_flight < 1:
            raise ConfigError("batch.max_size and batch.max_in_flight must be >= 1, batch.max_wait_ms >= 0")

    def with_services(self, bootstrap_servers: str | None = None, redis_url: str | None = None) -> Settings:
        """A copy pointing at the given services (used when the embedded stack starts)."""
        kafka = dataclasses.replace(self.kafka, bootstrap_servers=bootstrap_servers or self.kafka.bootstrap_servers)
        redis = dataclasses.replace(self.redis, url=redis_url or self.redis.url)
        return dataclasses.replace(self, kafka=kafka, redis=redis)


# ---------------------------------------------------------------- parsing

_SECTIONS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Settings))


def _section_types() -> dict[str, type]:
    hints = typing.get_type_hints(Settings)
    return {name: hints[name] for name in _SECTIONS}


def _parse_bool(key: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str):
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off", ""):
            return False
    raise ConfigError(f"{key}: expected a boolean (true/false), got {shown_value(key, raw)}")


def _described(annotation: Any) -> str:
    """How an error names a type: ``int``, ``"auto"``, ``one of a, b``."""
    if typing.get_origin(annotation) is Literal:
        choices = typing.get_args(annotation)
        return f'"{choices[0]}"' if len(choices) == 1 else "one of " + ", ".join(map(str, choices))
    return getattr(annotation, "__name__", str(annotation))


def _coerce_choice(key: str, choices: tuple[Any, ...], raw: Any) -> Any:
    """A ``Literal`` of strings: the member ``raw`` names (any case), else an error with the choices."""
    if isinstance(raw, str):
        for choice in choices:
            if raw.strip().lower() == str(choice).lower():
                return choice
        hint = did_you_mean(raw.strip().lower(), [str(c) for c in choices])
        raise ConfigError(f"{key}: expected one of {', '.join(map(str, choices))}, got {shown_value(key, raw)}{hint}")
    raise ConfigError(f"{key}: expected one of {', '.join(map(str, choices))}, got {shown_value(key, raw)}")


def _coerce_int(key: str, raw: Any, from_env: bool) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if from_env and isinstance(raw, str):
        try:
            return int(raw.strip())
        except ValueError:
            pass
    raise ConfigError(f"{key}: expected an integer, got {shown_value(key, raw)}")


def _coerce_float(key: str, raw: Any, from_env: bool) -> float:
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return float(raw)
    if from_env and isinstance(raw, str):
        try:
            return float(raw.strip())
        except ValueError:
            pass
    raise ConfigError(f"{key}: expected a number, got {shown_value(key, raw)}")


def _coerce_str(key: str, raw: Any, from_env: bool) -> str:
    if isinstance(raw, str):
        return raw
    raise ConfigError(f"{key}: expected a string, got {shown_value(key, raw)}")


#: The scalar setting types and their parsers (an environment variable's text is parsed by type).
_SCALARS: dict[Any, Callable[[str, Any, bool], Any]] = {
    bool: lambda key, raw, _from_env: _parse_bool(key, raw), int: _coerce_int, float: _coerce_float, str: _coerce_str,
}


def _coerce_union(key: str, annotation: Any, raw: Any, from_env: bool) -> Any:
    """e.g. ``int | Literal["auto"]``: the first member the value parses as."""
    members = typing.get_args(annotation)
    for member in members:
        try:
            return _coerce(key, member, raw, from_env)
        except ConfigError:
            continue
    raise ConfigError(f"{key}: expected {' or '.join(_described(m) for m in members)}, got {shown_value(key, raw)}")


def _coerce_annotated(key: str, annotation: Any, raw: Any, from_env: bool) -> Any:
    """``Annotated[T, Matches(...)]``: a T that also follows the pattern."""
    base, *extras = typing.get_args(annotation)
    value = _coerce(key, base, raw, from_env)
    for extra in extras:
        if isinstance(extra, Matches):
            value = extra.check(key, value)
    return value


def _coerce_strings(key: str, raw: Any, from_env: bool) -> tuple[str, ...]:
    if from_env and isinstance(raw, str):
        raw = [p.strip() for p in raw.split(",") if p.strip()]
    if isinstance(raw, (list, tuple)) and all(isinstance(x, str) for x in raw):
        return tuple(raw)
    raise ConfigError(f"{key}: expected a list of strings, got {shown_value(key, raw)}")


def _coerce_table(key: str, annotation: Any, raw: Any, from_env: bool) -> dict[str, Any]:
    """A TOML table, or ``name=value,name=value`` from the environment; values typed where the
    annotation says (e.g. ``Mapping[str, BackendName]``)."""
    table: dict[str, Any] | None = None
    if isinstance(raw, Mapping):
        table = dict(raw)
    elif from_env and isinstance(raw, str):
        pairs = [p.strip() for p in raw.split(",") if p.strip()]
        if all("=" in p for p in pairs):
            table = {k.strip(): v.strip() for k, v in (p.split("=", 1) for p in pairs)}
    if table is None:
        raise ConfigError(f"{key}: expected a table of client properties, got {shown_value(key, raw)}")
    args = typing.get_args(annotation)
    if len(args) == 2 and args[1] is not Any:
        return {k: _coerce(f"{key}.{k}", args[1], v, from_env) for k, v in table.items()}
    return table


def _coerce(key: str, annotation: Any, raw: Any, from_env: bool) -> Any:
    """``raw`` (from the file, or an environment variable's text when ``from_env``) as the
    setting's declared type; a :class:`ConfigError` naming ``key`` otherwise."""
    origin = typing.get_origin(annotation)
    if origin in (types.UnionType, typing.Union):
        return _coerce_union(key, annotation, raw, from_env)
    if origin is Literal:
        return _coerce_choice(key, typing.get_args(annotation), raw)
    if origin is Annotated:
        return _coerce_annotated(key, annotation, raw, from_env)
    if origin is tuple:
        return _coerce_strings(key, raw, from_env)
    if origin in (Mapping, dict) or annotation in (Mapping, dict):
        return _coerce_table(key, annotation, raw, from_env)
    if annotation in _SCALARS:
        return _SCALARS[annotation](key, raw, from_env)
    raise ConfigError(f"{key}: unsupported setting type {annotation!r}")  # pragma: no cover


def _env_name(section: str, key: str) -> str:
    return f"{ENV_PREFIX}{section.upper()}__{key.upper()}"


def _build_section(name: str, cls: type, values: Mapping[str, Any], env_keys: set[str], path: Path | None = None) -> Any:
    """One section's settings; an error names where the value came from (file or variable)."""
    hints = typing.get_type_hints(cls, include_extras=True)  # keeps Annotated (Device)
    known = sorted(f.name for f in dataclasses.fields(cls))
    for key in sorted(set(values) - set(known)):
        if f"{name}.{key}" in env_keys:
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint = f" (did you mean {_env_name(name, close[0])}?)" if close else f" (known keys of [{name}]: {', '.join(known)})"
            raise ConfigError(f"environment variable {_env_name(name, key)}: unknown key {key!r} in [{name}]{hint}")
        hint = did_you_mean(key, known) or f" (known: {', '.join(known)})"
        raise ConfigError(f"{path or 'settings'}: unknown key {key!r} in [{name}]{hint}")
    kwargs = {}
    for k, v in values.items():
        from_env = f"{name}.{k}" in env_keys
        try:
            kwargs[k] = _coerce(f"{name}.{k}", hints[k], v, from_env=from_env)
        except ConfigError as exc:
            where = f"environment variable {_env_name(name, k)}" if from_env else str(path or "settings")
            raise ConfigError(f"{where}: {exc}") from None
    return cls(**kwargs)


def _read_properties_file(path: str) -> dict[str, str]:
    props: dict[str, str] = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            raise ConfigError(f"{path}: expected key=value, got a line without '='")
        k, v = line.split("=", 1)
        props[k.strip()] = v.strip()
    return props


def _file_values(path: Path) -> dict[str, dict[str, Any]]:
    """The TOML file's tables, by section; unknown sections and non-tables refused."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        loaded = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    data: dict[str, dict[str, Any]] = {}
    for section, values in loaded.items():
        if section not in _SECTIONS:
            hint = did_you_mean(section, _SECTIONS) or f" (known: {', '.join(_SECTIONS)})"
            raise ConfigError(f"{path}: unknown section [{section}]{hint}")
        if not isinstance(values, dict):
            raise ConfigError(f"[{section}] in {path} must be a table")
        data[section] = dict(values)
    return data


def _apply_env(data: dict[str, dict[str, Any]], env: Mapping[str, str]) -> set[str]:
    """``SC__<SECTION>__<KEY>`` and the services' own variables over ``data`` (in place); returns
    the ``section.key`` names that came from the environment (errors name the variable)."""
    env_keys: set[str] = set()
    for key, value in env.items():
        section = key[3:].split("__", 1)[0].lower() if key.startswith("SC_") and "__" in key[3:] else ""
        if section in _SECTIONS and section != "kafka" and not key.startswith(ENV_PREFIX):
            # SC_BATCH__MAX_SIZE (one underscore) would otherwise be ignored without a word
            raise ConfigError(f"environment variable {key}: settings are {ENV_PREFIX}<SECTION>__<KEY> (two underscores "
                              f"after SC, e.g. {ENV_PREFIX}{key[3:]}) and client properties {KAFKA_CLIENT_ENV_PREFIX}<KEY>")
        if not key.startswith(ENV_PREFIX):
            continue
        parts = key[len(ENV_PREFIX):].lower().split("__")
        if len(parts) != 2 or parts[0] not in _SECTIONS:
            close = difflib.get_close_matches(parts[0], list(_SECTIONS), n=1, cutoff=0.6)
            hint = (f" (did you mean {_env_name(close[0], parts[1])}?)" if close and len(parts) == 2
                    else f" (sections: {', '.join(_SECTIONS)})")
            raise ConfigError(f"environment variable {key}: expected {ENV_PREFIX}<SECTION>__<KEY>{hint}")
        data.setdefault(parts[0], {})[parts[1]] = value
        env_keys.add(f"{parts[0]}.{parts[1]}")
    for variable, (section, key) in SERVICE_ENV_VARIABLES.items():
        if env.get(variable):
            data.setdefault(section, {})[key] = env[variable]
    return env_keys


def _apply_client_properties(data: dict[str, dict[str, Any]], env: Mapping[str, str]) -> None:
    """``kafka.client``: the file's table, then ``KAFKA_CLIENT_PROPERTIES_FILE``, then
    ``SC_KAFKA__*`` variables (in place)."""
    raw_client = data.get("kafka", {}).get("client", {}) or {}
    if not isinstance(raw_client, Mapping):
        raise ConfigError(f"kafka.client: expected a table of client properties, got {shown_value('kafka.client', raw_client)}")
    client = dict(raw_client)
    if env.get("KAFKA_CLIENT_PROPERTIES_FILE"):
        client.update(_read_properties_file(env["KAFKA_CLIENT_PROPERTIES_FILE"]))
    for key, value in env.items():
        if key.startswith(KAFKA_CLIENT_ENV_PREFIX):
            client[key[len(KAFKA_CLIENT_ENV_PREFIX):].lower().replace("_", ".")] = value
    if client:
        data.setdefault("kafka", {})["client"] = client


def load_settings(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read settings from ``path`` (TOML, optional) and ``env`` (default ``os.environ``), validated."""
    env = dict(os.environ if env is None else env)
    file_path = Path(path) if path is not None else None
    data = _file_values(file_path) if file_path is not None else {}
    env_keys = _apply_env(data, env)
    _apply_client_properties(data, env)
    types_ = _section_types()
    sections = {name: _build_section(name, types_[name], data.get(name, {}), env_keys, file_path) for name in _SECTIONS}
    return Settings(**sections).validate()
