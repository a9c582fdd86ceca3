"""On the real broker and Redis: ZTF records carry ACAI's five class scores and braai's score
beside our realbogus; Rubin records are not scored by these ZTF-only models."""
from __future__ import annotations

import threading

import pytest

from schemas.classified_record import decode_classified
from schemas.decode import decode_message
from stream.config import load_settings
from stream.stack import create_topics
from tests.conftest import SAMPLES
from tests.kafka_helpers import produce_files, read_topic
from tests.stream.test_service import settings_env

pytestmark = pytest.mark.integration

ACAI_KEYS = {"acai.hosted", "acai.variable", "acai.orphan", "acai.nuclear", "acai.bogus"}


def test_ztf_records_have_acai_class_scores_and_braai(services, unique_name, tmp_path):
    from stream.service import build_service, load_runners

    name = unique_name
    create_topics(services.bootstrap_servers, [f"{name}-alerts", f"{name}-classified", f"{name}-dlq"], partitions=2)
    files = sorted((SAMPLES / "ztf" / "kowalski").glob("*.avro"))[:12] + sorted((SAMPLES / "rubin").rglob("*.avro"))
    alerts = {item.key: item for p in files for item in decode_message(p.read_bytes())}
    produce_files(services.bootstrap_servers, f"{name}-alerts", files)

    settings = load_settings(env=settings_env(services, name, tmp_path, SC__ENGINE__MODELS="realbogus,braai,acai"))
    runners = load_runners(settings)
    service = build_service(settings, runners=runners, metrics_port=0)
    service.owns_runners = True
    thread = threading.Thread(target=service.run, kwargs={"max_idle_s": 4}, daemon=True)
    thread.start()
    thread.join(240)
    assert not thread.is_alive()

    records = [decode_classified(r.value) for r in
               read_topic(services.bootstrap_servers, f"{name}-classified", expect=len(alerts), timeout_s=60)]
    assert {f"{r['survey']}:{r['alert_id']}" for r in records} == set(alerts)
    ztf = [r for r in records if r["survey"] == "ztf"]
    rubin = [r for r in records if r["survey"] == "rubin"]
    assert ztf and rubin
    for r in ztf:
        models = {m["name"]: m for m in r["models"]}
        assert set(models) == {"realbogus", "braai", "acai"}
        assert set(r["class_scores"]) == ACAI_KEYS
        assert all(0.0 <= v <= 1.0 for v in r["class_scores"].values())
        assert models["acai"]["version"] == "d1_dnn_20201130" and models["acai"]["trained"]
        assert r["real_bogus"] == models["realbogus"]["scores"]["real"]
        if r["survey_score_versions"].get("drb") == "d6_m7":
            assert abs(models["braai"]["scores"]["real"] - r["survey_scores"]["drb"]) < 2e-6
    assert sum(r["survey_score_versions"].get("drb") == "d6_m7" for r in ztf) >= 5
    for r in rubin:
        assert [m["name"] for m in r["models"]] == ["realbogus"]
        assert not set(r["class_scores"]) & ACAI_KEYS
