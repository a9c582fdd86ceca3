"""Readers for the files under ``deploy/`` and the names the code really reads.

The set of accepted environment variables and settings keys is derived from
:mod:`stream.config` (its dataclasses and the literal names it reads from ``env``), never
hard-coded here, so a renamed setting breaks these tests instead of the deployment.
"""
from __future__ import annotations

import ast
import dataclasses
import re
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from stream import config as config_module

__all__ = [
    "REPO",
    "DEPLOY",
    "METRICS",
    "PROMETHEUS_OWN_SERIES",
    "yaml_documents",
    "all_yaml_files",
    "settings_env_names",
    "literal_env_names",
    "entrypoint_env_names",
    "is_librdkafka_property",
    "client_env_property",
    "promql_metric_names",
    "promql_grouping_labels",
    "allowed_series",
    "rule_files",
    "rules",
    "recorded_series",
]

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"

#: The service's metric contract (stream/metrics.py): name -> (kind, label names).
METRICS: dict[str, tuple[str, frozenset[str]]] = {
    "sc_messages_consumed_total": ("counter", frozenset({"topic"})),
    "sc_records_published_total": ("counter", frozenset({"topic"})),
    "sc_duplicates_total": ("counter", frozenset({"topic"})),
    "sc_dead_letters_total": ("counter", frozenset({"reason"})),
    "sc_batch_size": ("histogram", frozenset()),
    "sc_stage_seconds": ("histogram", frozenset({"stage"})),
    "sc_end_to_end_latency_seconds": ("histogram", frozenset()),
    "sc_consumer_lag": ("gauge", frozenset({"topic", "partition"})),
    "sc_redis_up": ("gauge", frozenset()),
    "sc_kafka_up": ("gauge", frozenset()),
    "sc_schema_registry_up": ("gauge", frozenset()),
    "sc_in_flight_batches": ("gauge", frozenset()),
    "sc_decode_worker_restarts_total": ("counter", frozenset()),
    "sc_decode_history_slow_reads_total": ("counter", frozenset()),
    "sc_model_info": ("gauge", frozenset({"name", "version", "sha256", "backend", "surveys"})),
    "sc_model_scores_total": ("counter", frozenset({"model", "survey"})),
}
#: Series Prometheus writes itself for every target (used only by the target-down rule).
PROMETHEUS_OWN_SERIES = frozenset({"up"})
#: Labels Prometheus attaches to every scraped series, plus a histogram's bucket bound.
TARGET_LABELS = frozenset({"job", "instance"})


def yaml_documents(path: Path) -> list[Any]:
    """Every document of a YAML file, empty documents dropped."""
    with path.open() as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc is not None]


def all_yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yml", ".yaml"))


def settings_env_names() -> frozenset[str]:
    """``SC__<SECTION>__<KEY>`` for every scalar or list setting (tables cannot come from env)."""
    names = set()
    for section in dataclasses.fields(config_module.Settings):
        cls = typing.get_type_hints(config_module.Settings)[section.name]
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            annotation = hints[f.name]
            if typing.get_origin(annotation) in (Mapping, dict) or annotation in (Mapping, dict):
                continue
            names.add(f"{config_module.ENV_PREFIX}{section.name.upper()}__{f.name.upper()}")
    return frozenset(names)


def literal_env_names() -> frozenset[str]:
    """Names stream/config.py reads: literally (``env.get("X")``, ``env["X"]``) and the services'
    addresses (``SERVICE_ENV_VARIABLES``)."""
    tree = ast.parse(Path(config_module.__file__).read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
            target, args = node.func.value, node.args
            if isinstance(target, ast.Name) and target.id == "env" and args and isinstance(args[0], ast.Constant):
                names.add(args[0].value)
        elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "env":
            if isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
                names.add(node.slice.value)
    names.update(config_module.SERVICE_ENV_VARIABLES)   # the services' addresses, read in one loop
    return frozenset(n for n in names if isinstance(n, str))


def entrypoint_env_names() -> frozenset[str]:
    """Variables the container entrypoint script itself reads (``${NAME...}``)."""
    text = (DEPLOY / "docker" / "entrypoint.sh").read_text()
    return frozenset(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", text))


def client_env_property(name: str) -> str:
    """The librdkafka property an ``SC_KAFKA__...`` variable sets, exactly as stream.config maps it."""
    return name[len(config_module.KAFKA_CLIENT_ENV_PREFIX):].lower().replace("_", ".")


def is_librdkafka_property(prop: str, value: str = "1") -> bool:
    """Whether librdkafka itself knows ``prop`` (it refuses unknown names at construction)."""
    from confluent_kafka import Consumer, KafkaException

    try:
        consumer = Consumer({"bootstrap.servers": "127.0.0.1:1", "group.id": "deploy-validate", prop: value})
    except KafkaException as exc:
        return "No such configuration property" not in str(exc)
    consumer.close()
    return True


_PROMQL_WORDS = frozenset({
    "sum", "min", "max", "avg", "count", "rate", "irate", "increase", "delta", "deriv",
    "histogram_quantile", "absent", "absent_over_time", "avg_over_time", "max_over_time",
    "min_over_time", "clamp_min", "clamp_max", "topk", "bottomk", "abs", "vector", "scalar",
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "offset", "bool", "inf", "nan",
})


def _strip_promql(expr: str) -> str:
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)          # string literals
    expr = re.sub(r"\{[^{}]*\}", "", expr)                    # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)                    # range selectors / $__rate_interval
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", r"\1", expr)  # grouping labels
    expr = re.sub(r"\boffset\s+\d+[smhdwy]", "", expr)        # offset durations
    return expr


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (identifiers that are not functions/keywords)."""
    idents = re.findall(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)", _strip_promql(expr))
    return {i for i in idents if i.lower() not in _PROMQL_WORDS}


def promql_grouping_labels(expr: str) -> set[str]:
    """Label names used in ``by (...)`` / ``on (...)`` clauses and in ``{...}`` matchers."""
    labels = set()
    for group in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
        labels.update(x.strip() for x in group.split(",") if x.strip())
    for matcher in re.findall(r"\{([^{}]*)\}", re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)):
        labels.update(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", matcher))
    return labels


def rule_files() -> list[Path]:
    """The rule files deploy/prometheus/prometheus.yml loads (container paths mapped to deploy/prometheus)."""
    (config,) = yaml_documents(DEPLOY / "prometheus" / "prometheus.yml")
    return [DEPLOY / "prometheus" / Path(path).name for path in config["rule_files"]]


def rules() -> list[dict[str, Any]]:
    """Every rule (alerting and recording) of every loaded rule file, in file order."""
    found = []
    for path in rule_files():
        (doc,) = yaml_documents(path)
        found.extend(rule for group in doc["groups"] for rule in group["rules"])
    return found


def recorded_series() -> dict[str, frozenset[str]]:
    """Series the recording rules write -> the labels they keep (the aggregation's ``by`` labels,
    less ``le``, which histogram_quantile and a single-bucket selection consume)."""
    return {rule["record"]: frozenset(promql_grouping_labels(rule["expr"]) - {"le"})
            for rule in rules() if "record" in rule}


def allowed_series() -> dict[str, frozenset[str]]:
    """Every series name the dashboard and rules may select -> the labels it carries (the
    service's metrics and Prometheus's own, with the target labels; the recorded series)."""
    series: dict[str, frozenset[str]] = {}
    for name, (kind, labels) in METRICS.items():
        if kind == "histogram":
            series[f"{name}_bucket"] = labels | {"le"}
            series[f"{name}_sum"] = labels
            series[f"{name}_count"] = labels
        else:
            series[name] = labels
    for name in PROMETHEUS_OWN_SERIES:
        series[name] = frozenset()
    return {**{k: v | TARGET_LABELS for k, v in series.items()}, **recorded_series()}
