"""On the real broker and Redis: each survey's records carry only the models validated on that
survey. ZTF records: realbogus, braai, ACAI's five class scores and (by default, where the packet
gives a reference-image source) alertclass's four; Rubin records: Rubin's own
real/bogus model (or none, with a stated reason), never a ZTF model's score, and every record
carries the survey's quality block. A model run on a survey it was never checked on
(``engine.run_unvalidated``) is published in ``models`` with ``validated = false`` only."""
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


def _run_service(services, name, tmp_path, files, **env):
    from stream.service import build_service, load_runners

    create_topics(services.bootstrap_servers, [f"{name}-alerts", f"{name}-classified", f"{name}-dlq"], partitions=2)
    alerts = {item.key: item for p in files for item in decode_message(p.read_bytes())}
    produce_files(services.bootstrap_servers, f"{name}-alerts", files)
    settings = load_settings(env=settings_env(services, name, tmp_path, **env))
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
    return records


def test_each_survey_gets_the_models_validated_on_it(services, unique_name, tmp_path):
    files = sorted((SAMPLES / "ztf" / "kowalski").glob("*.avro"))[:12] + sorted((SAMPLES / "rubin").rglob("*.avro"))
    records = _run_service(services, unique_name, tmp_path, files, SC__ENGINE__MODELS="realbogus,rubin_realbogus,braai,acai")
    ztf = [r for r in records if r["survey"] == "ztf"]
    rubin = [r for r in records if r["survey"] == "rubin"]
    assert ztf and rubin
    for r in ztf:
        models = {m["name"]: m for m in r["models"]}
        assert set(models) == {"realbogus", "braai", "acai"}
        assert set(r["class_scores"]) == ACAI_KEYS
        assert all(0.0 <= v <= 1.0 for v in r["class_scores"].values())
        assert models["acai"]["version"] == "d1_dnn_20201130" and models["acai"]["trained"]
        assert r["real_bogus"] == models["realbogus"]["scores"]["real"] and r["real_bogus_model"] == "realbogus"
        assert all(m["validated"] is True for m in r["models"]) and r["unscored_reason"] is None
        assert r["quality"]["rule"] == "ztf-fink-v1" and r["quality"]["nbad"] is not None
        if r["survey_score_versions"].get("drb") == "d6_m7":
            assert abs(models["braai"]["scores"]["real"] - r["survey_scores"]["drb"]) < 2e-6
    assert sum(r["survey_score_versions"].get("drb") == "d6_m7" for r in ztf) >= 5
    for r in rubin:   # Rubin's own real/bogus model only; no class model is validated on Rubin
        assert [(m["name"], m["validated"]) for m in r["models"]] == [("rubin_realbogus", True)]
        assert r["real_bogus"] == r["models"][0]["scores"]["real"] and r["real_bogus_model"] == "rubin_realbogus"
        assert r["class_scores"] == {} and r["unscored_reason"] is None
        assert "reliability" in r["survey_scores"] and r["quality"]["rule"] == "rubin-v1"


def test_a_rubin_alert_no_validated_model_scores_is_published_with_the_reason(services, unique_name, tmp_path):
    files = sorted((SAMPLES / "rubin" / "alerce-kafka").glob("*.avro"))
    records = _run_service(services, unique_name, tmp_path, files, SC__ENGINE__MODELS="realbogus,braai,acai")
    assert len(records) == 5
    for r in records:   # no model of this selection was checked on Rubin: published unscored, with the reason
        assert r["models"] == [] and r["real_bogus"] is None and r["class_scores"] == {}
        assert r["unscored_reason"] == "no model validated on survey 'rubin' scored this input"
        assert "reliability" in r["survey_scores"] and r["quality"]["rule"] == "rubin-v1"


def test_a_model_run_where_it_was_never_checked_is_marked_unvalidated(services, unique_name, tmp_path):
    files = sorted((SAMPLES / "ztf" / "kowalski").glob("*.avro"))[:3] + sorted((SAMPLES / "rubin" / "alerce-kafka").glob("*.avro"))
    records = _run_service(services, unique_name, tmp_path, files, SC__ENGINE__MODELS="realbogus",
                           SC__ENGINE__RUN_UNVALIDATED="realbogus:rubin")
    ztf = [r for r in records if r["survey"] == "ztf"]
    rubin = [r for r in records if r["survey"] == "rubin"]
    assert len(ztf) == 3 and len(rubin) == 5
    for r in ztf:
        assert [(m["name"], m["validated"]) for m in r["models"]] == [("realbogus", True)] and r["real_bogus"] is not None
    for r in rubin:
        assert [(m["name"], m["validated"]) for m in r["models"]] == [("realbogus", False)]
        assert 0.0 <= r["models"][0]["scores"]["real"] <= 1.0
        assert r["real_bogus"] is None and r["real_bogus_model"] is None
        assert "realbogus" in r["unscored_reason"] and "validated = false" in r["unscored_reason"]


ALERTCLASS_KEYS = {"alertclass.asteroid", "alertclass.galaxy_host", "alertclass.hostless_or_faint", "alertclass.star"}


def _ztf_copy_without_reference_source(source, directory, candid: int, **fields):
    """A real ZTF packet re-written with a new candid and some reference-source fields replaced."""
    import fastavro

    with source.open("rb") as fh:
        reader = fastavro.reader(fh)
        schema, record = reader.writer_schema, next(reader)
    record["candid"] = record["candidate"]["candid"] = candid
    record["candidate"].update(fields)
    path = directory / f"{candid}.avro"
    with path.open("wb") as fh:
        fastavro.writer(fh, fastavro.parse_schema(schema), [record])
    return path


def test_default_models_give_ztf_alertclass_only_where_the_packet_gives_a_reference_source(services, unique_name, tmp_path):
    """alertclass 3.0.0 passes the default bar: with no models named it scores ZTF alerts beside
    ACAI; a packet without a usable reference-image source (null, or ZTF's -999) is published all
    the same, scored by the others, with no alertclass score."""
    real = sorted((SAMPLES / "ztf" / "kowalski").glob("*.avro"))[:6]
    made = tmp_path / "made"
    made.mkdir()
    bare = [_ztf_copy_without_reference_source(real[0], made, 9_000_000_000_001, magnr=None),
            _ztf_copy_without_reference_source(real[1], made, 9_000_000_000_002, distnr=-999.0)]
    records = _run_service(services, unique_name, tmp_path, real + bare)
    by_id = {int(r["alert_id"]): r for r in records}
    for r in records:
        models = {m["name"]: m for m in r["models"]}
        assert {"realbogus", "braai"} <= set(models) and all(m["validated"] for m in r["models"])
        if int(r["alert_id"]) in (9_000_000_000_001, 9_000_000_000_002):
            assert "alertclass" not in models and not ALERTCLASS_KEYS & set(r["class_scores"])
            continue
        assert ALERTCLASS_KEYS <= set(r["class_scores"]) and models["alertclass"]["version"] == "3.0.0-pool-reference"
        assert abs(sum(r["class_scores"][k] for k in ALERTCLASS_KEYS) - 1.0) < 1e-3
    assert len(by_id) == 8
