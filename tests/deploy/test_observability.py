"""Prometheus config and rules, and the Grafana dashboard, use only the service's metric contract."""
from __future__ import annotations

import json
import re

import pytest

from stream.config import load_settings

from .deployfiles import (
    DEPLOY,
    METRICS,
    allowed_series,
    promql_grouping_labels,
    promql_metric_names,
    recorded_series,
    rules,
    yaml_documents,
)

DASHBOARD = DEPLOY / "grafana" / "dashboards" / "survey-classifier.json"


def _rules() -> list[dict]:
    """The alert rules of every rule file prometheus.yml loads."""
    return [rule for rule in rules() if "alert" in rule]


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]


def _check_expr(expr: str) -> set[str]:
    allowed = allowed_series()
    names = promql_metric_names(expr)
    assert names, f"no metric in {expr!r}"
    assert names <= set(allowed), f"{expr!r} uses {sorted(names - set(allowed))}"
    labels = promql_grouping_labels(expr)
    carried = set().union(*(allowed[n] for n in names))
    assert labels <= carried, f"{expr!r} groups by labels no selected metric has: {sorted(labels - carried)}"
    return names


def test_prometheus_scrapes_the_classifier_metrics_endpoint():
    (config,) = yaml_documents(DEPLOY / "prometheus" / "prometheus.yml")
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    port = load_settings(DEPLOY / "config" / "compose.toml", env={}).observability.metrics_port
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    (compose,) = yaml_documents(DEPLOY / "compose" / "compose.yaml")
    assert {t.split(":")[0] for t in targets} == {"classifier", "classifier-gpu"} <= set(compose["services"])
    assert all(t.endswith(f":{port}") for t in targets)


@pytest.mark.parametrize("rule", _rules(), ids=lambda r: r["alert"])
def test_alert_rule_is_complete_and_uses_known_metrics(rule):
    assert re.fullmatch(r"\d+[smh]", rule["for"])
    assert rule["labels"]["severity"] in ("warning", "critical")
    assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    assert rule["expr"].count("(") == rule["expr"].count(")")
    _check_expr(rule["expr"])


@pytest.mark.parametrize("rule", [r for r in rules() if "record" in r], ids=lambda r: r["record"])
def test_recording_rule_follows_the_naming_convention_and_uses_known_metrics(rule):
    """level:metric:operations, the level being the labels it keeps (job, or job and instance)."""
    level, metric, _ = rule["record"].split(":")
    assert set(recorded_series()[rule["record"]]) == {"job"} | ({"instance"} if level == "instance" else set())
    assert level in ("job", "instance")
    assert rule["expr"].count("(") == rule["expr"].count(")")
    names = _check_expr(rule["expr"])
    assert {re.sub(r"_(bucket|sum|count)$", "", n) for n in names} == {metric}, names


def test_rules_cover_lag_redis_and_dead_letters():
    used = set().union(*(promql_metric_names(r["expr"]) for r in _rules()))
    assert {"sc_consumer_lag", "sc_redis_up", "sc_dead_letters_total"} <= used


def test_dashboard_parses_and_references_only_known_metrics():
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and dashboard["uid"]
    used = set()
    for expr in _dashboard_exprs():
        assert expr.count("(") == expr.count(")")
        used |= _check_expr(expr)
    base = {re.sub(r"_(bucket|sum|count)$", "", n) if METRICS.get(re.sub(r"_(bucket|sum|count)$", "", n), ("",))[0] == "histogram" else n
            for n in used}
    # Throughput, latency, lag, dead letters by reason, duplicates, stage timings, and the rest.
    assert set(METRICS) <= base, f"dashboard lacks {sorted(set(METRICS) - base)}"


def test_dashboard_shows_latency_quantiles_and_breakdowns():
    exprs = _dashboard_exprs()
    latency = [e for e in exprs if "sc_end_to_end_latency_seconds_bucket" in e]
    assert any("histogram_quantile(0.5," in e for e in latency) and any("histogram_quantile(0.99," in e for e in latency)
    assert any("sc_dead_letters_total" in e and "reason" in promql_grouping_labels(e) for e in exprs)
    assert any("sc_stage_seconds_bucket" in e and "stage" in promql_grouping_labels(e) for e in exprs)


def test_dashboard_datasource_is_the_provisioned_one():
    (datasources,) = yaml_documents(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")
    uids = {d["uid"] for d in datasources["datasources"]}
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] in uids
        for target in panel["targets"]:
            assert target["datasource"]["uid"] in uids


def test_the_service_exposes_exactly_the_metric_contract_on_its_endpoints():
    """Drive the real Metrics + MetricsServer: every contract series is scraped over HTTP with the
    labels the dashboard and rules group by, and the service exposes no sc_* series beyond it."""
    import urllib.error
    import urllib.request

    from prometheus_client.metrics import MetricWrapperBase
    from prometheus_client.parser import text_string_to_metric_families

    from stream.metrics import Metrics, MetricsServer

    metrics = Metrics()
    collectors = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            (family,) = value.describe()
            collectors[family.name + ("_total" if family.type == "counter" else "")] = (family.type, value)
    assert {name: kind for name, (kind, _) in collectors.items()} == {n: k for n, (k, _) in METRICS.items()}
    for name, (kind, collector) in collectors.items():
        labels = METRICS[name][1]
        child = collector.labels(**{label: "0" for label in labels}) if labels else collector
        {"counter": lambda c: c.inc(), "gauge": lambda c: c.set(1), "histogram": lambda c: c.observe(0.01)}[kind](child)

    server = MetricsServer(metrics, "127.0.0.1", 0).start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        text = urllib.request.urlopen(f"{base}/metrics", timeout=5).read().decode()
        assert urllib.request.urlopen(f"{base}/healthz", timeout=5).status == 200
        with pytest.raises(urllib.error.HTTPError) as not_ready:  # nothing assigned, Redis not seen yet
            urllib.request.urlopen(f"{base}/readyz", timeout=5)
        assert not_ready.value.code == 503
    finally:
        server.close()
    scraped: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("sc_") and not sample.name.endswith("_created"):
                scraped.setdefault(sample.name, set()).update(sample.labels)
    expected = {name: labels - {"job", "instance"} for name, labels in allowed_series().items() if name.startswith("sc_")}
    assert scraped == expected
