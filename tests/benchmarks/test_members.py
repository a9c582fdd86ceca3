"""``python -m benchmarks.night --members N``: the figures' arithmetic, and a tiny night through one
and two real members of one consumer group (the embedded stack; structure, never speed)."""
from __future__ import annotations

import json

import pytest

from benchmarks.members import latency_figures, visit_of
from benchmarks.night import parse_args


def test_latency_figures_give_the_objectives_quantile_and_share():
    lat = [1000.0] * 97 + [59_000.0, 61_000.0, 90_000.0]   # 98 of 100 within 60 s
    figures = latency_figures(lat)
    assert figures["n"] == 100 and figures["share_within_60s"] == 0.98
    assert figures["p50"] == 1000.0 and figures["max"] == 90_000.0
    assert figures["p95"] <= figures["p98"] <= figures["p99"] <= figures["max"]
    assert 59_000.0 <= figures["p98"] <= 61_000.0
    assert latency_figures([61_000.0, 1.0])["share_within_60s"] == 0.5
    assert latency_figures([])["p98"] is None and latency_figures([])["share_within_60s"] is None


def test_an_input_belongs_to_the_visit_whose_sending_had_started():
    starts = [1_000, 31_000, 61_000]
    assert [visit_of(t, starts) for t in (1_000, 30_999, 31_000, 45_000, 99_000)] == [0, 0, 1, 1, 2]
    assert visit_of(500, starts) == 0


def test_members_option():
    args = parse_args(["--alerts", "100", "--members", "1", "2"])
    assert args.members == [1, 2] and args.visits == 1 and args.visit_period_s == 30.0
    assert parse_args([]).members is None
    with pytest.raises(SystemExit):
        parse_args(["--members", "0"])


@pytest.mark.integration
@pytest.mark.slow
def test_tiny_night_through_one_and_two_members(tmp_path):
    from benchmarks.night import main

    out = tmp_path / "members"
    assert main(["--alerts", "120", "--members", "1", "2", "--visits", "2", "--visit-period-s", "3", "--burst-window-s", "1",
                 "--models", "realbogus", "--out", str(out)]) == 0
    results = json.loads((out / "members.json").read_text())
    assert [run["members"] for run in results["runs"]] == [1, 2]
    for run in results["runs"]:
        assert run["complete"] and run["outputs"] == run["inputs"] == 120 and run["dead_letters"] == 0
        assert run["published"] == 120 and run["balanced"], "every alert published once, each member's counts reconciled"
        assert len(run["per_member"]) == run["members"] and all(m["consumed"] > 0 for m in run["per_member"])
        assert all(m["stage_seconds"]["infer"] > 0 and m["decode_workers_cpu_s"] > 0 for m in run["per_member"])
        assert sum(m["consumed"] for m in run["per_member"]) >= 120
        lat = run["latency_ms"]
        assert lat["n"] == 120 and 0 < lat["p50"] <= lat["p95"] <= lat["p98"] <= lat["p99"] <= lat["max"]
        assert lat["share_within_60s"] == 1.0
        assert [v["n"] for v in run["latency_ms_by_visit"]] == [60, 60]
        assert run["throughput_per_s"] > 0 and run["cpu_ms_per_alert"] > 0 and run["cpu_seconds"]["broker"] >= 0
        assert run["assignment_strategy"] == "range" and run["partitions"] == 4
    md = (out / "members.md").read_text()
    assert "| 2 | 4 | 2 x 60 | True |" in md and "share within 60 s" in md
    assert results["machine"]["load_average_1_5_15"] and results["command"].startswith("python -m benchmarks.night --alerts 120")
