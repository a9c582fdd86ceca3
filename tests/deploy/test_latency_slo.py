"""The 60 s latency objective: the histogram's buckets, the recording and alert rules that read them,
the dashboard panels, the runbook, and (where promtool is installed) Prometheus's own check and
unit tests of the rules (deploy/prometheus/tests/latency-slo.test.yml)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from stream.metrics import LATENCY_BUCKETS, LATENCY_OBJECTIVE_S, Metrics

from .deployfiles import DEPLOY, promql_metric_names, recorded_series, rule_files, rules, yaml_documents

SLO_RULES = DEPLOY / "prometheus" / "latency-slo.yml"
PROMTOOL_TESTS = DEPLOY / "prometheus" / "tests" / "latency-slo.test.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "survey-classifier.json"
HISTOGRAM = "sc_end_to_end_latency_seconds"


def _exposed_bucket_bounds() -> list[str]:
    """The ``le`` label values a real Metrics registry exposes for the latency histogram."""
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    metrics = Metrics()
    metrics.latency.observe(1.0)
    families = text_string_to_metric_families(generate_latest(metrics.registry).decode())
    (family,) = [f for f in families if f.name == HISTOGRAM]
    return [s.labels["le"] for s in family.samples if s.name == f"{HISTOGRAM}_bucket"]


def _slo_rules() -> dict[str, dict]:
    (doc,) = yaml_documents(SLO_RULES)
    return {r.get("record") or r["alert"]: r for group in doc["groups"] for r in group["rules"]}


def test_buckets_resolve_the_objective():
    """A bound exactly at 60 s, and bounds no more than 10 s apart from 20 s to 90 s, 30 s to 120 s."""
    bounds = [float(b) for b in _exposed_bucket_bounds() if b != "+Inf"]
    assert bounds == sorted(bounds) == [float(b) for b in LATENCY_BUCKETS]
    assert float(LATENCY_OBJECTIVE_S) in bounds
    near = [b for b in bounds if 20 <= b <= 120]
    assert near[0] == 20 and near[-1] == 120
    gaps = [(lo, hi) for lo, hi in zip(near, near[1:]) if hi - lo > (10 if hi <= 90 else 30)]
    assert not gaps, f"buckets too coarse near the objective: {gaps}"
    assert bounds[-1] >= 5 * LATENCY_OBJECTIVE_S, "a stuck member's latency must still be below the top bound"


def test_prometheus_loads_the_slo_rules_and_each_recorded_series_is_read():
    """Loaded by prometheus.yml; every recorded series feeds an alert or a dashboard panel (no dead rules)."""
    assert SLO_RULES in rule_files()
    readers = [r["expr"] for r in rules() if "alert" in r]
    readers += [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p.get("targets", [])]
    used = set().union(*(promql_metric_names(e) for e in readers))
    assert set(recorded_series()) <= used, f"recorded but never read: {sorted(set(recorded_series()) - used)}"


def test_bucket_selectors_name_an_exposed_bound():
    """``le="60.0"``: what the Python client writes (and Prometheus 3 normalises to); ``le="60"``
    would select nothing and the share would read empty."""
    exposed = set(_exposed_bucket_bounds())
    selectors = [(r.get("record") or r["alert"], le) for r in rules() for le in re.findall(r'le="([^"]*)"', r["expr"])]
    assert selectors, "no rule selects a bucket"
    for name, le in selectors:
        assert le in exposed, f"{name} selects le={le!r}; the service exposes {sorted(exposed)}"


def test_p98_and_share_rules_per_instance_and_overall():
    slo = _slo_rules()
    for level, labels in (("job", "job, le"), ("instance", "job, instance, le")):
        p98 = slo[f"{level}:{HISTOGRAM}:p98_5m"]["expr"]
        assert p98 == f"histogram_quantile(0.98, sum by ({labels}) (rate({HISTOGRAM}_bucket[5m])))"
        share = slo[f"{level}:{HISTOGRAM}:share_within_{LATENCY_OBJECTIVE_S}s_5m"]["expr"]
        keep = labels.removesuffix(", le")
        assert share == (f'sum by ({keep}) (rate({HISTOGRAM}_bucket{{le="{float(LATENCY_OBJECTIVE_S)}"}}[5m])) / '
                         f"sum by ({keep}) (rate({HISTOGRAM}_count[5m]))")


def test_alert_fires_on_p98_over_the_objective_with_a_runbook():
    alert = _slo_rules()["SurveyClassifierLatencyP98Over60s"]
    assert alert["expr"] == f"job:{HISTOGRAM}:p98_5m > {LATENCY_OBJECTIVE_S}"
    assert promql_metric_names(alert["expr"]) <= set(recorded_series())
    assert alert["labels"]["severity"] == "critical" and alert["for"] == "5m"
    (section,) = re.findall(r"'([^']+)'", alert["annotations"]["description"])
    readme = (DEPLOY / "README.md").read_text()
    runbook = readme.split(f"**{section}**", 1)
    assert len(runbook) == 2, f"deploy/README.md has no runbook entry **{section}**"
    entry = runbook[1].split("\n\n**", 1)[0]
    assert "SurveyClassifierLatencyP98Over60s" in entry and f"{HISTOGRAM}" in entry


def test_dashboard_shows_p98_against_the_60s_line():
    dashboard = json.loads(DASHBOARD.read_text())
    slo_panels = [p for p in dashboard["panels"]
                  if any(f"{HISTOGRAM}:p98_5m" in t["expr"] for t in p.get("targets", []))]
    assert slo_panels, "no panel shows the recorded p98"
    for panel in slo_panels:
        steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert any(s["value"] == LATENCY_OBJECTIVE_S for s in steps), panel["title"]
        assert panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] in ("line", "line+area", "dashed")
        assert panel["fieldConfig"]["defaults"]["unit"] == "s"
    exprs = {t["expr"] for p in slo_panels for t in p["targets"]}
    assert any(f"job:{HISTOGRAM}:p98_5m" in e for e in exprs) and any(f"instance:{HISTOGRAM}:p98_5m" in e for e in exprs)
    share = [p for p in dashboard["panels"] if any("share_within_60s_5m" in t["expr"] for t in p.get("targets", []))]
    assert share and share[0]["fieldConfig"]["defaults"]["unit"] == "percentunit"
    assert {s["value"] for s in share[0]["fieldConfig"]["defaults"]["thresholds"]["steps"]} >= {0.98}


PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (Debian: apt-get install --no-install-recommends prometheus)")


@needs_promtool
def test_promtool_checks_every_rule_file():
    result = subprocess.run([PROMTOOL, "check", "rules", *map(str, rule_files())], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_unit_tests_of_the_slo_rules_pass():
    """Two members, one of them slow: p98 66 s overall (29.4 and 78 s per member), 97.5% within
    60 s, the alert pending then firing; exactly 98% and no traffic never fire."""
    result = subprocess.run([PROMTOOL, "test", "rules", str(PROMTOOL_TESTS)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
