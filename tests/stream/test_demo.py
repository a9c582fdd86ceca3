"""``make demo`` end to end: its summary agrees with what is on the classified topic."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from schemas.decode import decode_message
from tests.conftest import SAMPLES

pytestmark = pytest.mark.integration


def test_demo_summary_matches_the_bundled_night(tmp_path, capsys):
    from stream.demo import run_demo

    distinct = Counter()
    for p in sorted(SAMPLES.rglob("*.avro")):
        for item in decode_message(p.read_bytes()):
            distinct[item.key] += 1
    summary = run_demo(tmp_path, png_count=2)
    out = capsys.readouterr().out
    assert summary.records == len(distinct), "one record per distinct bundled alert"
    assert summary.duplicates == sum(distinct.values()) - len(distinct)
    assert summary.dead_letters == {"truncated_avro": 1}
    assert summary.by_survey["ztf"] == sum(1 for k in distinct if k.startswith("ztf:"))
    assert summary.by_survey["rubin"] == sum(1 for k in distinct if k.startswith("rubin:"))
    assert sum(summary.real_bogus_histogram.values()) + sum(summary.unscored.values()) == summary.records
    assert summary.real_bogus_models["ztf"] == "realbogus"
    assert "realbogus" in summary.models
    assert summary.latency_ms_p50 is not None and summary.latency_ms_p99 >= summary.latency_ms_p50
    assert len(summary.pngs) == 2 and all((tmp_path / p).exists() or __import__("pathlib").Path(p).exists() for p in summary.pngs)
    assert json.loads((tmp_path / "summary.json").read_text())["records"] == summary.records
    assert "summary of the classified topic" in out
    # ZTF alerts get ACAI's five class scores and braai's drb, recomputed to float32 rounding
    assert {"acai.hosted", "acai.variable", "acai.orphan", "acai.nuclear", "acai.bogus"} <= set(summary.class_scores)
    assert summary.class_scores["acai.hosted"]["n"] == summary.by_survey["ztf"]
    assert summary.braai_vs_drb["n"] > 0 and summary.braai_vs_drb["max_abs_diff"] < 2e-6
    assert 0 < summary.acai_drb_filled < summary.by_survey["ztf"]  # the schema 3.2 packets have no drb
    assert "class score acai.hosted" in out and "braai d6_m7 vs ZTF drb" in out
