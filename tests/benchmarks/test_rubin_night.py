"""``python -m benchmarks.night --rubin-night`` / ``--break-point``: the drawn visits, the full-night
arithmetic, the LSSTCam night's alerts, and a tiny Rubin night and sweep through a real member
(the embedded stack; structure, never speed)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from benchmarks.night import parse_args
from benchmarks.rubin_night import DEFAULT_SIZES, VisitSizes, draw_night, parse_visit_sizes, rubin_full_night_on_paper


def test_the_default_distribution_is_rubins_night():
    sizes = parse_visit_sizes(DEFAULT_SIZES)
    assert sizes == VisitSizes() and 10_000 <= sizes.mean() <= 10_400, "~10 million alerts over 1,000 visits"
    visits, about = draw_night(2000, sizes, seed=1)
    drawn = np.array([v.size for v in visits])
    assert drawn.min() >= 1000 and drawn.max() == 40_000 and about["forced_peak"] is None
    assert 0.01 <= np.mean(drawn == 40_000) <= 0.03 and abs(drawn.mean() / sizes.mean() - 1) < 0.03
    gaps = np.diff([v.start_s for v in visits])
    assert gaps.min() >= 30 and gaps.max() <= 40
    assert parse_visit_sizes("lognormal:median=5000,peak_share=0").peak_share == 0
    for bad in ("uniform:a=1", "lognormal:medain=3", "lognormal:min=0"):
        with pytest.raises(ValueError):
            parse_visit_sizes(bad)


def test_a_night_is_seeded_scaled_and_always_has_a_peak():
    sizes = VisitSizes(peak_share=0.0)
    a, about = draw_night(5, sizes, scale=10, seed=3)
    b, _ = draw_night(5, sizes, scale=10, seed=3)
    assert a == b and about["forced_peak"] == 2 and a[2].peak and a[2].size == 4000 and a[2].unscaled_size == 40_000
    assert all(v.size == round(v.unscaled_size / 10) for v in a) and about["alerts"] == sum(v.size for v in a)
    assert a[0].start_s == 0.0 and about["scale"] == 10


def test_a_full_rubin_night_on_paper():
    paper = rubin_full_night_on_paper(3.6, drain_per_s_per_member=300.0, cores_per_member=2)
    assert paper["mean_rate_per_s"] == pytest.approx(10_000_000 / (1000 * 35), abs=0.1)
    assert paper["core_hours_per_night"] == pytest.approx(10.0, abs=0.05)       # 10 M x 3.6 ms
    assert paper["peak_drain_rate_per_s"] == pytest.approx(0.98 * 40_000 / 60, abs=0.1)
    assert paper["cores_for_peak"] == pytest.approx(0.98 * 40_000 / 60 * 3.6 / 1000, abs=0.1)
    assert paper["members_for_peak"] == math.ceil(0.98 * 40_000 / 60 / 300) == 3 and paper["cores_for_peak_at_measured_drain"] == 6
    # CPU-normalised: 653 alerts/s x 3.6 ms = 2.35 cores, members of 2 cores kept 83% busy: 2 members
    assert paper["members_for_peak_cpu"] == math.ceil(0.98 * 40_000 / 60 * 3.6 / 1000 / (2 * 0.83)) == 2 and paper["cores_for_peak_cpu"] == 4


def test_rubin_options():
    args = parse_args(["--rubin-night"])
    assert args.members == [1] and args.visits == 10 and args.scale == 10 and args.cadence_s == (30.0, 40.0)
    assert args.visit_sizes == VisitSizes()
    args = parse_args(["--break-point", "9000,3000", "--members", "1", "2", "--cadence-s", "5:6"])
    assert args.break_point == [3000, 9000] and args.members == [1, 2] and args.cadence_s == (5.0, 6.0)
    with pytest.raises(SystemExit):
        parse_args(["--rubin-night", "--visit-sizes", "poisson:mu=3"])


def test_the_lsstcam_night_is_real_rubin_alerts_with_fresh_ids():
    from benchmarks.night_data import LSSTCAM_SOURCES, build_night
    from stream.replay.sources import iter_bytes

    if not all(p.exists() for p in LSSTCAM_SOURCES):
        pytest.skip("the shared LSSTCam packets are not here")
    night = build_night(400, source=LSSTCAM_SOURCES, surveys=("rubin",))
    assert night.describe()["by_survey"] == {"rubin": 400} and night.originals >= 150 and night.copies == 3
    ids = set()
    for m in night.alerts:
        (decoded,) = list(iter_bytes(m.value, "night"))
        ids.add(decoded.alert_id)
    assert len(ids) == 400, "every copy has its own alert id"


@pytest.mark.integration
@pytest.mark.slow
def test_tiny_rubin_night_and_break_point_through_a_member(tmp_path):
    from benchmarks.night import main
    from benchmarks.night_data import LSSTCAM_SOURCES

    if not all(p.exists() for p in LSSTCAM_SOURCES):
        pytest.skip("the shared LSSTCam packets are not here")
    out = tmp_path / "night"
    assert main(["--rubin-night", "--visits", "3", "--scale", "400", "--cadence-s", "2:3", "--burst-window-s", "0.5",
                 "--out", str(out)]) == 0
    results = json.loads((out / "rubin.json").read_text())
    [run] = results["runs"]
    assert results["plan"]["sizes"] == run["visit_sizes"] and run["complete"] and run["outputs"] == run["inputs"] == sum(run["visit_sizes"])
    assert results["night"]["by_survey"] == {"rubin": run["inputs"]} and run["dead_letters"] == 0 and run["balanced"]
    assert [v["n"] for v in run["latency_ms_by_visit"]] == run["visit_sizes"] and len(run["visit_table"]) == 3
    assert all(v["drain_per_s"] > 0 for v in run["latency_ms_by_visit"])
    assert results["full_rubin_night_on_paper"]["core_hours_per_night"] > 0
    md = (out / "rubin.md").read_text()
    assert "Per visit, 1 member(s)" in md and "A full Rubin night on this CPU" in md

    out = tmp_path / "sweep"
    assert main(["--break-point", "20,40", "--burst-window-s", "0.5", "--out", str(out)]) == 0
    results = json.loads((out / "rubin.json").read_text())
    assert [r["visit_size"] for r in results["runs"]] == [20, 40], "both sizes meet 60 s: no break"
    assert results["break_point"]["1"] == {"breaks_at": None, "largest_met": 40, "note": "no size tried broke the objective"}
