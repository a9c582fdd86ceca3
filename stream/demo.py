"""``make demo``: the whole loop on the embedded stack, with the bundled real night.

replay the bundled real packets (plus one deliberately truncated copy, to show the dead-letter
path) -> run the service until the topic is drained -> subscribe to the classified topic ->
print a summary (counts, real/bogus distribution, agreement with the surveys' own scores,
class scores per class (ACAI's five on ZTF alerts), braai's parity with ZTF's own ``drb``, latency
p50/p99, dead letters by reason) and write a few PNG cutout triplets.
"""
from __future__ import annotations

import dataclasses
import json
import statistics
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

import schemas

__all__ = ["DemoSummary", "summarise", "run_demo", "SAMPLES_DIR"]

log = structlog.get_logger(__name__)

SAMPLES_DIR = schemas.SAMPLES_DIR
ALERTS, CLASSIFIED, DEAD = "demo-alerts", "demo-classified", "demo-dead-letter"


@dataclass
class DemoSummary:
    """What the demo prints; computed from the classified topic, not from the service's counters."""

    records: int = 0
    by_survey: dict[str, int] = field(default_factory=dict)
    untrained_models: list[str] = field(default_factory=list)
    models: dict[str, str] = field(default_factory=dict)
    real_bogus_histogram: dict[str, int] = field(default_factory=dict)
    #: survey -> the model whose P(real) is real_bogus there (each survey has its own)
    real_bogus_models: dict[str, str] = field(default_factory=dict)
    #: survey -> records no model validated on that survey scored (published with their reason)
    unscored: dict[str, int] = field(default_factory=dict)
    agreement: dict[str, dict[str, float | int]] = field(default_factory=dict)
    classes: dict[str, int] = field(default_factory=dict)
    #: class_scores key -> {"n": records with it, "mean": mean score, "above_0.5": how many >= 0.5}
    class_scores: dict[str, dict[str, float | int]] = field(default_factory=dict)
    #: braai d6_m7 (recomputed here) vs the drb ZTF put in the same alerts (drbversion d6_m7)
    braai_vs_drb: dict[str, float | int] = field(default_factory=dict)
    #: records whose ACAI drb feature was missing and filled with braai d6_m9's score
    acai_drb_filled: int = 0
    latency_ms_p50: float | None = None
    latency_ms_p99: float | None = None
    dead_letters: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    pngs: list[str] = field(default_factory=list)


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return float(values[0])
    return float(statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1])


def summarise(records: Sequence[Any], dead_reasons: Sequence[str] = (), duplicates: int = 0) -> DemoSummary:
    """Pure: the summary of classified records (``stream.subscribe.ClassifiedRecord``)."""
    s = DemoSummary(records=len(records), dead_letters=dict(Counter(dead_reasons)), duplicates=duplicates)
    s.by_survey = dict(Counter(r.survey for r in records))
    for r in records:
        for m in r.models:
            s.models[m.name] = f"{m.version} sha256:{m.weights_sha256[:12]} ({m.backend})"
            if not m.trained and m.name not in s.untrained_models:
                s.untrained_models.append(m.name)
    bins = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0001]
    hist: Counter[str] = Counter()
    for r in records:
        if r.real_bogus_model is not None:
            s.real_bogus_models.setdefault(r.survey, r.real_bogus_model)
        if r.unscored_reason is not None:
            s.unscored[r.survey] = s.unscored.get(r.survey, 0) + 1
        if r.real_bogus is None:
            continue
        for lo, hi in zip(bins, bins[1:]):
            if lo <= r.real_bogus < hi:
                hist[f"{lo:.1f}-{min(hi, 1.0):.1f}"] += 1
    s.real_bogus_histogram = dict(sorted(hist.items()))
    # Agreement with the survey's own score (a comparison with another model, not ground truth).
    for survey, own in (("ztf", "drb"), ("ztf", "rb"), ("rubin", "reliability")):
        pairs = [(r.real_bogus, r.survey_scores[own]) for r in records
                 if r.survey == survey and r.real_bogus is not None and own in r.survey_scores]
        if pairs:
            agree = sum((ours >= 0.5) == (theirs >= 0.5) for ours, theirs in pairs)
            s.agreement[f"{survey}.{own}"] = {"n": len(pairs), "agree_at_0.5": round(agree / len(pairs), 3)}
    s.classes = dict(Counter(r.top_class for r in records if r.top_class))
    by_key: dict[str, list[float]] = {}
    for r in records:
        for key, value in r.class_scores.items():
            by_key.setdefault(key, []).append(float(value))
    s.class_scores = {key: {"n": len(v), "mean": round(statistics.fmean(v), 3), "above_0.5": sum(x >= 0.5 for x in v)}
                      for key, v in sorted(by_key.items())}
    diffs = [abs(m.scores["real"] - r.survey_scores["drb"]) for r in records for m in r.models
             if m.name == "braai" and m.version == "d6_m7" and "real" in m.scores and "drb" in r.survey_scores
             and r.survey_score_versions.get("drb") == "d6_m7"]
    s.acai_drb_filled = sum(1 for r in records for m in r.models if m.name == "acai" and m.scores.get("drb_from_braai_d6_m9") == 1.0)
    if diffs:
        s.braai_vs_drb = {"n": len(diffs), "max_abs_diff": float(max(diffs))}
    lat = [float(r.latency_ms) for r in records if r.latency_ms is not None]
    s.latency_ms_p50, s.latency_ms_p99 = _percentile(lat, 50), _percentile(lat, 99)
    return s


def _format(s: DemoSummary) -> str:
    lines = ["", "=== survey-classifier demo: summary of the classified topic ===",
             f"records published      {s.records}  {s.by_survey}",
             f"duplicates suppressed  {s.duplicates}",
             f"dead letters           {sum(s.dead_letters.values())}  {s.dead_letters}"]
    for name, what in s.models.items():
        lines.append(f"model                  {name} {what}")
    if s.untrained_models:
        lines.append(f"NOTE: UNTRAINED models {s.untrained_models}: their scores are meaningless; every record says untrained=true")
    lines.append("real/bogus P(real)     " + "  ".join(f"{k}:{v}" for k, v in s.real_bogus_histogram.items()))
    if s.real_bogus_models:
        lines.append(f"real/bogus model       {s.real_bogus_models}  (each survey's own, validated on it)")
    if s.unscored:
        lines.append(f"unscored (no model validated on the survey)  {s.unscored}")
    for k, v in s.agreement.items():
        lines.append(f"agreement with {k:<11} {v}  (the survey's own model: a comparison, not ground truth)")
    if s.classes:
        lines.append(f"classes (each record's first class model's top)  {s.classes}")
    if s.class_scores:
        for key, v in s.class_scores.items():
            lines.append(f"class score {key:<14} n={v['n']:<4} mean={v['mean']:.3f}  >=0.5: {v['above_0.5']}")
        if s.acai_drb_filled:
            lines.append(f"ACAI drb feature filled  {s.acai_drb_filled} records lacked drb (older schemas): "
                         "braai d6_m9's score used, as ACAI's training did")
    else:
        lines.append("class scores           none (no class model ran on these inputs)")
    if s.braai_vs_drb:
        lines.append(f"braai d6_m7 vs ZTF drb  n={s.braai_vs_drb['n']}  max |diff| {s.braai_vs_drb['max_abs_diff']:.1e}"
                     "  (the same model recomputed: a parity check)")
    if s.latency_ms_p50 is not None:
        lines.append(f"latency ms p50 / p99   {s.latency_ms_p50:.0f} / {s.latency_ms_p99:.0f}  (input message timestamp -> classified)")
    for p in s.pngs:
        lines.append(f"png                    {p}")
    return "\n".join(lines)


def run_demo(out_dir: Path, *, backend: str = "onnxruntime", samples: Path = SAMPLES_DIR, png_count: int = 3) -> DemoSummary:
    from confluent_kafka import Producer

    from schemas.decode import decode_message
    from stream.config import load_settings
    from stream.kafka_clients import read_topic
    from stream.kafka_logs import with_client_logger
    from stream.replay.publish import replay
    from stream.service import build_service
    from stream.stack import EMBEDDED_ASSIGNMENT_STRATEGY, EMBEDDED_PARTITIONS, EMBEDDED_SESSION_TIMEOUT_MS, EmbeddedStack, create_topics
    from stream.subscribe import subscribe
    from stream.subscribe.output import png_name, render_triplet
    from stream.subscribe.reader import AlertFetcher

    out_dir.mkdir(parents=True, exist_ok=True)
    with EmbeddedStack() as stack:
        print(f"[1/4] embedded stack up: kafka {stack.bootstrap_servers}, redis {stack.redis_url}", flush=True)
        create_topics(stack.bootstrap_servers, [ALERTS, CLASSIFIED, DEAD], partitions=EMBEDDED_PARTITIONS)
        env = {"KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap_servers, "REDIS_URL": stack.redis_url,
               "SC__KAFKA__ALERT_TOPICS": ALERTS, "SC__KAFKA__OUTPUT_TOPIC": CLASSIFIED, "SC__KAFKA__DEAD_LETTER_TOPIC": DEAD,
               "SC__KAFKA__ASSIGNMENT_STRATEGY": EMBEDDED_ASSIGNMENT_STRATEGY, "SC__KAFKA__SESSION_TIMEOUT_MS": str(EMBEDDED_SESSION_TIMEOUT_MS),
               "SC__ENGINE__BACKEND": backend, "SC__ENGINE__ALLOW_UNTRAINED": "true",
               "SC__ENGINE__CACHE_DIR": str(out_dir / "engines"), "SC__OBSERVABILITY__METRICS_PORT": "0",
               "SC__OBSERVABILITY__HEALTH_PORT": "0"}
        service = build_service(load_settings(env=env))
        worker = threading.Thread(target=service.run, kwargs={"max_idle_s": 4}, name="demo-service", daemon=True)
        worker.start()
        deadline = time.monotonic() + 60
        while not service.metrics.assigned and worker.is_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        print(f"[2/4] service running (backend {backend}), partitions assigned: {service.metrics.assigned}", flush=True)

        summary = replay(samples, ALERTS, bootstrap_servers=stack.bootstrap_servers, progress=False)
        first = sorted(samples.rglob("*.avro"))[0].read_bytes()
        producer = Producer(with_client_logger({"bootstrap.servers": stack.bootstrap_servers}))
        producer.produce(ALERTS, first[: len(first) // 3], key=b"truncated-on-purpose")
        producer.flush(10)
        del producer  # closed before the stack stops: no reconnect noise at shutdown
        print(f"[3/4] replayed {summary.sent} real packets from {samples} (+1 truncated on purpose); "
              f"unreadable files: {len(summary.unreadable)}", flush=True)
        worker.join(300)
        totals = service.metrics.totals()
        print(f"      service drained the topic: consumed {totals.consumed}, published {totals.published}, "
              f"duplicates {totals.duplicates}, dead-lettered {totals.dead_lettered}, balanced {totals.balanced}", flush=True)

        records = list(subscribe(stack.bootstrap_servers, CLASSIFIED, until_end=True))
        dead = [r.headers for r in read_topic(stack.bootstrap_servers, DEAD, idle_s=2.0)]
        result = summarise(records, [h.get("sc-reason", b"?").decode() for h in dead], duplicates=totals.duplicates)
        with AlertFetcher(stack.bootstrap_servers) as fetcher:
            picks = sorted((r for r in records if r.survey == "ztf"), key=lambda r: -(r.real_bogus or 0))[:png_count]
            for rec in picks:
                alert = decode_message(fetcher.fetch(rec.source_topic, rec.source_partition, rec.source_offset))[0]
                path = render_triplet(alert, rec, out_dir / png_name(rec))
                result.pngs.append(str(path))
        (out_dir / "summary.json").write_text(json.dumps(dataclasses.asdict(result), indent=2))
        print("[4/4] subscribed to the classified topic", flush=True)
        print(_format(result), flush=True)
        print(f"\nsummary written to {out_dir / 'summary.json'}", flush=True)
    return result
