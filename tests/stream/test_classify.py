"""``survey-classifier classify`` on the bundled real packets: one JSON line per alert, holding
the classified record's fields (every model's scores and provenance, the survey's own score
beside ours), scored by the service's scoring path."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engines.registry import load_registry
from schemas.alert import Alert
from schemas.decode import iter_file
from schemas.decode.errors import DecodeError
from stream.cli import main

SAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "samples"


def _decoded(root: Path) -> list:
    return [item for path in sorted(p for p in root.rglob("*.avro")) for _, item in iter_file(path)]


def test_classify_prints_one_line_per_alert_with_provenance(capsys):
    expected = _decoded(SAMPLES / "ztf")
    assert expected and not any(isinstance(i, DecodeError) for i in expected)
    code = main(["classify", str(SAMPLES / "ztf"), "--models", "realbogus", "--allow-untrained", "--threads", "1"])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    records = [json.loads(line) for line in out]
    assert len(records) == len(expected)
    card = load_registry().card("realbogus")
    for record, alert in zip(records, expected, strict=True):
        assert record["alert_id"] == str(alert.alert_id) and record["survey"] == "ztf"
        [model] = record["models"]
        scores = model["scores"]
        assert set(scores) == {"bogus", "real"} and record["real_bogus"] == scores["real"]
        assert scores["bogus"] + scores["real"] == pytest.approx(1.0, abs=1e-5)
        assert model["name"] == "realbogus" and model["weights_sha256"] == card.weights_sha256
        assert model["version"] == card.version and model["trained"] == card.trained
        assert model["backend"] == "torch" and record["untrained"] == (not card.trained)
        assert record["survey_scores"] == {k: pytest.approx(v) for k, v in alert.survey_scores.items()}


def test_classify_prints_the_fields_of_the_record_the_service_publishes(capsys):
    """Same scoring path, same projection: the line equals the classified record built from the
    registry runner's scores, less the Kafka source and timestamps."""
    from engines.scoring import score_items
    from schemas.classified_record import build_classified_record

    path = sorted((SAMPLES / "ztf" / "kowalski").glob("*.avro"))[0]
    [alert] = [item for _, item in iter_file(path)]
    main(["classify", str(path), "--models", "realbogus", "--allow-untrained", "--threads", "1"])
    [line] = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    runner = load_registry().load_runner("realbogus", "torch", allow_untrained=True)
    [results] = score_items([alert], [runner])
    record = build_classified_record(alert, results, source_topic="t", source_partition=0, source_offset=0,
                                     source_timestamp_ms=0, ingested_ms=0, classified_ms=0, classifier_version="x")
    kafka_only = {"source_topic", "source_partition", "source_offset", "source_timestamp_ms", "ingested_ms",
                  "classified_ms", "classifier_version", "processing_host"}
    assert line.pop("source") == str(path)
    assert line == {k: v for k, v in record.items() if k not in kafka_only}


def test_classify_scores_equal_the_registry_runner(capsys):
    alerts = [a for a in _decoded(SAMPLES / "ztf" / "fink") if isinstance(a, Alert)][:4]
    main(["classify", *[str(p) for p in sorted((SAMPLES / "ztf" / "fink").glob("*.avro"))[:4]],
          "--models", "realbogus", "--allow-untrained", "--threads", "1"])
    records = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    runner = load_registry().load_runner("realbogus", "torch", allow_untrained=True)
    direct = runner.score(alerts)
    ours = np.array([[r["models"][0]["scores"]["bogus"], r["models"][0]["scores"]["real"]] for r in records])
    np.testing.assert_allclose(ours, direct, atol=1e-6)


def test_classify_reports_decode_errors_and_missing_paths(tmp_path, capsys):
    bad = tmp_path / "bad.avro"
    bad.write_bytes(b"not an alert at all")
    code = main(["classify", str(bad), "--allow-untrained"])
    line = json.loads(capsys.readouterr().out.strip())
    assert code == 1 and line["error"]
    assert main(["classify", str(tmp_path / "absent.avro")]) == 2


def test_agreement_report_against_drb(tmp_path, capsys):
    code = main(["classify", str(SAMPLES / "ztf" / "kowalski"), "--models", "realbogus", "--allow-untrained",
                 "--agreement-report", str(tmp_path), "--threads", "1"])
    assert code == 0
    report = json.loads((tmp_path / "drb_agreement.json").read_text())
    assert "NOT ACCURACY" in report["notes"][0]
    assert report["run"]["alerts"] == sum(
        1 for a in _decoded(SAMPLES / "ztf" / "kowalski") if "drb" in a.survey_scores) - report["run"]["excluded_as_injection_bases"]
    assert (tmp_path / "drb_agreement_roc.png").stat().st_size > 0


def test_classify_scores_a_full_size_raw_hst_exposure_once_with_the_shipped_hrcelestialnet(tmp_path, capsys):
    """A raw ACS/WFC frame (2 SCI chips of 2068 x 4144, ~16 MB packed: over the Kafka-sized
    message cap, under classify's file cap) gets one record: both chips scored, averaged."""
    from benchmarks.night_data import build_exposures

    path = tmp_path / "jsynth000q_raw.avro"
    path.write_bytes(build_exposures(1)[0])
    code = main(["classify", str(path), "--models", "hrcelestialnet", "--threads", "2"])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and len(out) == 1
    record = json.loads(out[0])
    assert "error" not in record, record
    assert record["kind"] == "raw_exposure" and record["alert_id"] == "jsynth000q_raw"
    [model] = record["models"]
    scores = model["scores"]
    assert set(scores) == {"galaxy", "nebula_star_cluster"} and sum(scores.values()) == pytest.approx(1.0, abs=1e-5)
    assert record["class_scores"] == {f"hrcelestialnet.{k}": v for k, v in scores.items()} and record["real_bogus"] is None
    card = load_registry().card("hrcelestialnet")
    assert model["name"] == "hrcelestialnet" and model["version"] == card.version and model["trained"]


def test_classify_scores_rubin_alerts_only_with_models_validated_on_rubin(capsys):
    """Every default model runs; on the bundled Rubin alerts only Rubin-validated scores appear,
    beside Rubin's own reliability and the quality block."""
    from engines.registry import load_registry

    rubin_models = sorted(c.name for c in load_registry().cards.values() if "rubin" in c.surveys)
    code = main(["classify", str(SAMPLES / "rubin"), "--threads", "1"])
    records = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert code == 0 and len(records) == len(_decoded(SAMPLES / "rubin"))
    for record in records:
        assert record["survey"] == "rubin"
        assert all(m["validated"] is True for m in record["models"])
        assert sorted(m["name"] for m in record["models"]) == rubin_models
        assert record["class_scores"] == {}               # no class model is validated on Rubin
        if record["real_bogus"] is None:
            assert record["unscored_reason"].startswith("no model validated on survey 'rubin'")
        assert record["quality"]["rule"] == "rubin-v1" and "reliability" in record["survey_scores"]


def test_classify_marks_a_model_run_where_it_was_never_checked(capsys):
    code = main(["classify", str(SAMPLES / "rubin" / "alerce-kafka"), "--models", "realbogus", "--threads", "1",
                 "--run-unvalidated", "realbogus:rubin"])
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.strip().splitlines()]
    assert code == 0 and len(records) == 5 and "never checked" in captured.err
    for record in records:
        assert [(m["name"], m["validated"]) for m in record["models"]] == [("realbogus", False)]
        assert record["real_bogus"] is None and "validated = false" in record["unscored_reason"]
    assert main(["classify", str(SAMPLES / "rubin"), "--run-unvalidated", "realbogus"]) == 2
